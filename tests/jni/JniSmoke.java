import org.edgert.Edgert;
import org.edgert.EdgertException;
import org.edgert.demo.ChatSession;

import java.nio.charset.StandardCharsets;

/** Host-side check of the JNI bridge, driven by tests/test_android_jni.py.
 *  args: model path, corrupt file path, prompt ids (comma separated), n tokens. Prints lines the
 *  Python test parses. */
public class JniSmoke {
    public static void main(String[] args) {
        String[] parts = args[2].split(",");
        int[] prompt = new int[parts.length];
        for (int i = 0; i < parts.length; i++) prompt[i] = Integer.parseInt(parts[i]);
        int n = Integer.parseInt(args[3]);

        try (Edgert e = new Edgert(args[0], 256, 1)) {
            int[] out = e.generate(prompt, n, 0.0f, 0, null, null);
            System.out.println("greedy " + join(out));
            final int[] seen = {0};
            e.trim(0);
            int[] stopped = e.generate(prompt, n, 0.0f, 0, null, tok -> ++seen[0] < 3);
            System.out.println("stopped " + stopped.length + " " + seen[0]);
            System.out.println("vocab " + e.vocabSize());
            System.out.println("metadata_has_tokenizer " + e.metadataJson().contains("\"tokenizer\""));
            e.trim(0);
            StringBuilder text = new StringBuilder();
            int nText = e.generateText(args[4], Edgert.TOKENIZE_ADD_SPECIAL | Edgert.TOKENIZE_PARSE_SPECIAL, n,
                                       0.0f, 0, piece -> {
                text.append(piece);
                return true;
            });
            System.out.println("text_hex " + hex(text.toString()) + " " + nText);
            System.out.println("tokenize " + join(e.tokenize(args[5], 0)));
            System.out.println("roundtrip_hex " + hex(e.detokenize(e.tokenize(args[5], 0))));
            try {
                e.formatChat(new String[] {"user"}, new String[] {"hi"});
                System.out.println("chat_error no-error");
            } catch (EdgertException ex) {
                System.out.println("chat_error " + ex.status());
            }
            try {
                e.trim(0);
                e.generateText("Once", 0, 8, 0.0f, 0, piece -> {
                    throw new IllegalStateException("listener failed");
                });
                System.out.println("listener_exception none");
            } catch (IllegalStateException ex) {
                System.out.println("listener_exception " + ex.getMessage().replace(' ', '_'));
            }
            try {
                e.eval(new int[] {e.vocabSize() + 5});
                System.out.println("bad_token no-error");
            } catch (EdgertException ex) {
                System.out.println("bad_token " + ex.status());
            }
        }
        try (Edgert bad = new Edgert(args[1], 256, 1)) {
            System.out.println("corrupt no-error");
        } catch (EdgertException ex) {
            System.out.println("corrupt " + ex.status());
        }
        // The app's logic (ChatSession): blank input, a missing model, a template-less model
        // and a real chat each end as text on the screen, never as an exception.
        System.out.println("session_blank " + session(args[6], "   ").replace(' ', '_'));
        System.out.println("session_missing " + (session("/nonexistent/model.edgt", "hi").startsWith("E:Cannot load")));
        System.out.println("session_no_template " + session(args[0], "hi").replace(' ', '_'));
        System.out.println("session_chat_hex " + hex(session(args[6], args[7])));
    }

    private static String session(String model, String message) {
        StringBuilder out = new StringBuilder();
        ChatSession.Screen screen = new ChatSession.Screen() {
            public void append(String text) { out.append(text); }
            public void showError(String m) { out.append("E:").append(m); }
        };
        try (ChatSession s = new ChatSession(model, 12)) {
            s.send(message, screen);
        }
        return out.toString();
    }

    private static String hex(String s) {
        StringBuilder sb = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) sb.append(String.format("%02x", b & 0xff));
        return sb.length() == 0 ? "-" : sb.toString();
    }

    private static String join(int[] a) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < a.length; i++) {
            if (i > 0) sb.append(',');
            sb.append(a[i]);
        }
        return sb.toString();
    }
}
