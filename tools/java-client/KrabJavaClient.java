/*
 * KrabJavaClient: the entry point of krab's Java reference client, the Apache Kafka Java client
 * (kafka-clients) driven from the command line for krab's integration suite. It parses the
 * subcommand, runs it, and turns any failure into a message on stderr and exit status 1. Every
 * subcommand prints machine-readable JSON lines on stdout, and nothing else.
 *
 * Build (idempotent; LIBDIR is a Kafka distribution's lib/ directory, e.g.
 * target/brokers/kafka/4.4.0/lib):
 *
 *     tools/java-client/build.sh LIBDIR OUTDIR
 *
 * Run (OUTDIR holds the classes and the quiet log4j2 configuration build.sh copied there):
 *
 *     java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
 *         -Dlog4j2.configurationFile=OUTDIR/log4j2.properties -cp "OUTDIR:LIBDIR/*" \
 *         KrabJavaClient SUBCOMMAND ARGS...
 *
 * The two -XX flags only make these short runs cheaper (C1 only, no concurrent GC threads): they
 * halve the CPU a `workload` run takes (about 4 s instead of 7.5 s of user time, measured on a
 * loaded 2-core machine).
 *
 * Subcommands:
 *
 *     consume BOOTSTRAP TOPIC PARTITIONS TIMEOUT_S [read_uncommitted|read_committed]   (Consume)
 *     key-partitions BOOTSTRAP TOPIC KEY...                                           (KeyPartitions)
 *     produce BOOTSTRAP TOPIC CODEC        (records from stdin)                       (Produce)
 *     transactions BOOTSTRAP TOPIC PARTITIONS N                                       (Transactions)
 *     workload BOOTSTRAP TOPIC                                                        (Workload)
 */

import java.util.Arrays;
import java.util.concurrent.ExecutionException;

public final class KrabJavaClient {
    private KrabJavaClient() {}

    static final String USAGE = String.join("\n",
            "usage: KrabJavaClient SUBCOMMAND ARGS...",
            "  consume BOOTSTRAP TOPIC PARTITIONS TIMEOUT_S [read_uncommitted|read_committed]",
            "  group-consume BOOTSTRAP TOPIC PARTITIONS RECORDS TIMEOUT_S",
            "  key-partitions BOOTSTRAP TOPIC KEY...",
            "  produce BOOTSTRAP TOPIC CODEC   (records on stdin)",
            "  transactions BOOTSTRAP TOPIC PARTITIONS N",
            "  workload BOOTSTRAP TOPIC");

    /** Wrong command-line arguments: reported with the usage text. */
    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        int status;
        try {
            status = run(args);
        } catch (UsageException e) {
            System.err.println("KrabJavaClient: " + e.getMessage());
            System.err.println(USAGE);
            status = 1;
        } catch (Throwable e) {
            Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            System.err.println("KrabJavaClient " + (args.length > 0 ? args[0] : "") + " failed: " + cause);
            status = 1;
        }
        System.out.flush();
        // Exit explicitly: a client thread left behind by a failure must not keep the JVM alive.
        System.exit(status);
    }

    private static int run(String[] args) throws Exception {
        if (args.length == 0) {
            throw new UsageException("no subcommand");
        }
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        switch (args[0]) {
            case "consume":
                return Consume.run(rest);
            case "group-consume":
                return GroupConsume.run(rest);
            case "key-partitions":
                return KeyPartitions.run(rest);
            case "produce":
                return Produce.run(rest);
            case "transactions":
                return Transactions.run(rest);
            case "workload":
                return Workload.run(rest);
            default:
                throw new UsageException("unknown subcommand `" + args[0] + "`");
        }
    }

    /** {@code args[i]} as a positive int named {@code name}. */
    static int positiveInt(String[] args, int i, String name) throws UsageException {
        try {
            int v = Integer.parseInt(args[i]);
            if (v <= 0) {
                throw new UsageException(name + " must be positive, got " + v);
            }
            return v;
        } catch (NumberFormatException e) {
            throw new UsageException(name + " must be an integer, got `" + args[i] + "`");
        }
    }
}
