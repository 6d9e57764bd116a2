import org.edgert.Edgert;
import org.edgert.EdgertException;

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
