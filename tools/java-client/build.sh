#!/bin/sh
# Compiles krab's Java reference client against a Kafka distribution's lib/ directory and copies
# its quiet log4j2 configuration next to the classes. Idempotent: OUTDIR's old classes are
# replaced each time.
#
#     tools/java-client/build.sh LIBDIR OUTDIR
#
# Then run it as documented at the top of KrabJavaClient.java.
set -eu
if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIBDIR OUTDIR" >&2
    exit 1
fi
lib=$1
out=$2
src=$(cd "$(dirname "$0")" && pwd)
if ! ls "$lib"/kafka-clients-*.jar >/dev/null 2>&1; then
    echo "$0: no kafka-clients jar in $lib" >&2
    exit 1
fi
mkdir -p "$out"
rm -f "$out"/*.class
javac --release 17 -Xlint:all -Werror -cp "$lib/*" -d "$out" "$src"/*.java
cp "$src/log4j2.properties" "$out/log4j2.properties"
