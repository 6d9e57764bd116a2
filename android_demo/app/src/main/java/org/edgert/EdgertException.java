package org.edgert;

/** A failure reported by the native runtime: the message starts with the edgert_status name
 *  (for example "EDGERT_ERR_FORMAT: ...") followed by what was wrong and what to do. */
public class EdgertException extends RuntimeException {
    public EdgertException(String message) {
        super(message);
    }

    /** The edgert_status name, e.g. "EDGERT_ERR_TOKEN". */
    public String status() {
        String m = getMessage();
        int colon = m == null ? -1 : m.indexOf(':');
        return colon < 0 ? "" : m.substring(0, colon);
    }
}
