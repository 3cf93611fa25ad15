/*
 * Json: the one JSON writer of the Java reference client (no JSON library on Kafka's classpath is
 * relied on). Encodes null, Boolean, Number, String, byte[] (as lowercase hex, the way krab's
 * integration suite compares bytes), List and Map (in the map's own order, so use a
 * LinkedHashMap). Strings are escaped the way Python's json.dumps does by default (ASCII only,
 * \\uXXXX for everything else), so that lines can be compared with xtask/scripts/consume_check.py's.
 */

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

final class Json {
    private Json() {}

    /** Compact form: {@code {"a":1,"b":[2,3]}}. */
    static String compact(Object value) {
        StringBuilder sb = new StringBuilder();
        write(sb, value, ",", ":");
        return sb.toString();
    }

    /** Python's default json.dumps form: {@code {"a": 1, "b": [2, 3]}}. */
    static String spaced(Object value) {
        StringBuilder sb = new StringBuilder();
        write(sb, value, ", ", ": ");
        return sb.toString();
    }

    /** An insertion-ordered map from alternating keys and values. */
    static Map<String, Object> obj(Object... keysAndValues) {
        if (keysAndValues.length % 2 != 0) {
            throw new IllegalArgumentException("Json.obj needs key/value pairs");
        }
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            m.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return m;
    }

    /** Lowercase hex of {@code bytes}. */
    static String hex(byte[] bytes) {
        final char[] digits = "0123456789abcdef".toCharArray();
        char[] out = new char[bytes.length * 2];
        for (int i = 0; i < bytes.length; i++) {
            out[2 * i] = digits[(bytes[i] >> 4) & 0xf];
            out[2 * i + 1] = digits[bytes[i] & 0xf];
        }
        return new String(out);
    }

    private static void write(StringBuilder sb, Object v, String comma, String colon) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String) {
            string(sb, (String) v);
        } else if (v instanceof byte[]) {
            sb.append('"').append(hex((byte[]) v)).append('"');
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long || v instanceof Short) {
            sb.append(v);
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("JSON has no " + d);
            }
            sb.append(d);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(comma);
                }
                first = false;
                string(sb, String.valueOf(e.getKey()));
                sb.append(colon);
                write(sb, e.getValue(), comma, colon);
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object item : (List<?>) v) {
                if (!first) {
                    sb.append(comma);
                }
                first = false;
                write(sb, item, comma, colon);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("no JSON form for " + v.getClass().getName());
        }
    }

    private static void string(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                case '\b': sb.append("\\b"); break;
                case '\f': sb.append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7e) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }
}
