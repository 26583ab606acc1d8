package dev.bprelay.consumer;

import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict RFC 8259 JSON reader using only the JDK, so the consumer example needs no
 * JSON library. Objects become {@link LinkedHashMap}, arrays {@link ArrayList}, numbers
 * {@link BigDecimal}, strings {@link String}, booleans {@link Boolean}, and JSON null {@link #NULL}.
 *
 * <p>Real consumers would use their usual JSON library (Jackson, Gson, ...); nothing here is
 * specific to bp-relay.
 */
public final class MiniJson {

    /** The JSON null value (Java null means "absent" in {@link #pointer}). */
    public static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    private static final int MAX_DEPTH = 512;

    /** Thrown for any input that is not a single valid JSON text in UTF-8. */
    public static final class JsonException extends Exception {
        private static final long serialVersionUID = 1L;

        JsonException(String message) {
            super(message);
        }
    }

    private final String s;
    private int i;

    private MiniJson(String s) {
        this.s = s;
    }

    /** Parses UTF-8 bytes (strictly decoded; a BOM is rejected, as RFC 8259 allows). */
    public static Object parse(byte[] utf8) throws JsonException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(utf8))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new JsonException("not valid UTF-8");
        }
        MiniJson p = new MiniJson(text);
        p.ws();
        Object v = p.value(0);
        p.ws();
        if (p.i != text.length()) {
            throw new JsonException("trailing data at char " + p.i);
        }
        return v;
    }

    /**
     * Evaluates an RFC 6901 JSON pointer. Returns Java null when the path does not exist.
     * The empty pointer "" is the whole document.
     */
    @SuppressWarnings("unchecked")
    public static Object pointer(Object doc, String pointer) {
        if (pointer.isEmpty()) {
            return doc;
        }
        if (!pointer.startsWith("/")) {
            throw new IllegalArgumentException("JSON pointer must be empty or start with '/': " + pointer);
        }
        Object cur = doc;
        for (String raw : pointer.substring(1).split("/", -1)) {
            String tok = raw.replace("~1", "/").replace("~0", "~");
            if (cur instanceof Map) {
                Map<String, Object> m = (Map<String, Object>) cur;
                if (!m.containsKey(tok)) {
                    return null;
                }
                cur = m.get(tok);
            } else if (cur instanceof List) {
                List<Object> l = (List<Object>) cur;
                if (!tok.matches("0|[1-9][0-9]{0,8}")) {
                    return null;
                }
                int idx = Integer.parseInt(tok);
                if (idx >= l.size()) {
                    return null;
                }
                cur = l.get(idx);
            } else {
                return null;
            }
        }
        return cur;
    }

    private JsonException err(String what) {
        return new JsonException(what + " at char " + i);
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                i++;
            } else {
                break;
            }
        }
    }

    private Object value(int depth) throws JsonException {
        if (depth > MAX_DEPTH) {
            throw err("nesting too deep");
        }
        if (i >= s.length()) {
            throw err("unexpected end of input");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{':
                return object(depth);
            case '[':
                return array(depth);
            case '"':
                return string();
            case 't':
                literal("true");
                return Boolean.TRUE;
            case 'f':
                literal("false");
                return Boolean.FALSE;
            case 'n':
                literal("null");
                return NULL;
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw err("unexpected character");
        }
    }

    private void literal(String lit) throws JsonException {
        if (!s.startsWith(lit, i)) {
            throw err("invalid literal");
        }
        i += lit.length();
    }

    private Map<String, Object> object(int depth) throws JsonException {
        Map<String, Object> m = new LinkedHashMap<>();
        i++; // {
        ws();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        while (true) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') {
                throw err("expected object key");
            }
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') {
                throw err("expected ':'");
            }
            i++;
            ws();
            m.put(k, value(depth + 1));
            ws();
            if (i >= s.length()) {
                throw err("unterminated object");
            }
            char c = s.charAt(i++);
            if (c == '}') {
                return m;
            }
            if (c != ',') {
                throw err("expected ',' or '}'");
            }
        }
    }

    private List<Object> array(int depth) throws JsonException {
        List<Object> l = new ArrayList<>();
        i++; // [
        ws();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return l;
        }
        while (true) {
            ws();
            l.add(value(depth + 1));
            ws();
            if (i >= s.length()) {
                throw err("unterminated array");
            }
            char c = s.charAt(i++);
            if (c == ']') {
                return l;
            }
            if (c != ',') {
                throw err("expected ',' or ']'");
            }
        }
    }

    private String string() throws JsonException {
        i++; // opening quote
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) {
                throw err("unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                throw err("control character in string");
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw err("unterminated escape");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) {
                        throw err("short \\u escape");
                    }
                    try {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    } catch (NumberFormatException ex) {
                        throw err("bad \\u escape");
                    }
                    i += 4;
                    break;
                default:
                    throw err("bad escape");
            }
        }
    }

    private BigDecimal number() throws JsonException {
        int start = i;
        if (s.charAt(i) == '-') {
            i++;
        }
        if (i < s.length() && s.charAt(i) == '0') {
            i++;
        } else if (i < s.length() && s.charAt(i) >= '1' && s.charAt(i) <= '9') {
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
        } else {
            throw err("bad number");
        }
        if (i < s.length() && s.charAt(i) == '.') {
            i++;
            int d = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            if (i == d) {
                throw err("bad fraction");
            }
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            int d = i;
            while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
            }
            if (i == d) {
                throw err("bad exponent");
            }
        }
        try {
            return new BigDecimal(s.substring(start, i));
        } catch (NumberFormatException ex) {
            throw err("bad number");
        }
    }
}
