package org.edgert;

/**
 * One model and one conversation (KV cache) from an .edgt file, over libedgert's C API.
 *
 * <p>Text in, text out: the model file carries its tokenizer and chat template, and libedgert
 * tokenizes, formats chats and detokenizes natively ({@link #chat}, {@link #generateText},
 * {@link #tokenize}). Token ids in and out remain available ({@link #generate}, {@link #eval}).
 * Not thread safe: use one instance from one thread (a background thread, never the UI thread).
 * Every native failure is an {@link EdgertException} whose message starts with the status name.
 */
public final class Edgert implements AutoCloseable {
    static {
        System.loadLibrary("edgert_jni");
    }

    /** edgert.h's EDGERT_TOKENIZE_ADD_SPECIAL: BOS/EOS as the model file says. */
    public static final int TOKENIZE_ADD_SPECIAL = 1;
    /** edgert.h's EDGERT_TOKENIZE_PARSE_SPECIAL: special tokens written in the text are parsed. */
    public static final int TOKENIZE_PARSE_SPECIAL = 2;

    /** Receives each generated token; return false to stop generating. */
    public interface TokenListener {
        boolean onToken(int token);
    }

    /** Receives generated text as it completes (never half a character); false stops. */
    public interface TextListener {
        boolean onText(String text);
    }

    private long model;
    private long context;
    private final int vocabSize;

    public Edgert(String path, int nCtx, int nThreads) {
        model = nativeLoadModel(path, false);
        try {
            context = nativeNewContext(model, nCtx, nThreads);
        } catch (RuntimeException e) {
            nativeFreeModel(model);
            model = 0;
            throw e;
        }
        vocabSize = nativeVocabSize(model);
    }

    public String metadataJson() {
        return nativeMetadataJson(checkOpen());
    }

    public int vocabSize() {
        return vocabSize;
    }

    /** Tokens currently held in the KV cache. */
    public int nPast() {
        checkOpen();
        return nativeNPast(context);
    }

    /** Keeps the first nKeep tokens of the conversation; 0 starts over. */
    public void trim(int nKeep) {
        checkOpen();
        nativeTrim(context, nKeep);
    }

    /** Token ids of text (flags: TOKENIZE_ADD_SPECIAL | TOKENIZE_PARSE_SPECIAL). */
    public int[] tokenize(String text, int flags) {
        return nativeTokenize(checkOpen(), text, flags);
    }

    /** The text of token ids. */
    public String detokenize(int[] ids) {
        return nativeDetokenize(checkOpen(), ids, 0);
    }

    /** The prompt for a conversation in the model's own chat template (ends with the assistant's turn). */
    public String formatChat(String[] roles, String[] contents) {
        return nativeChatFormat(checkOpen(), roles, contents, true);
    }

    /** Appends the prompt and streams up to maxNewTokens of text; stops at the model's EOS. */
    public int generateText(String prompt, int flags, int maxNewTokens, float temperature, long seed,
                            TextListener listener) {
        checkOpen();
        return nativeGenerateText(context, prompt, flags, maxNewTokens, temperature, 0, 1.0f, seed,
                                  listener);
    }

    /**
     * Answers one user message with the chat template, streaming the answer; the conversation
     * starts over each time (trim(0)). Returns the number of tokens generated.
     */
    public int chat(String userMessage, int maxNewTokens, float temperature, long seed,
                    TextListener listener) {
        String prompt = formatChat(new String[] {"user"}, new String[] {userMessage});
        trim(0);
        return generateText(prompt, TOKENIZE_PARSE_SPECIAL, maxNewTokens, temperature, seed, listener);
    }

    /** Appends tokens to the conversation and returns the logits of the last one. */
    public float[] eval(int[] tokens) {
        return nativeEval(checkOpen(), context, tokens);
    }

    /** Appends the prompt and generates up to maxNewTokens; temperature 0 is greedy. */
    public int[] generate(int[] prompt, int maxNewTokens, float temperature, long seed,
                          int[] stopTokens, TokenListener listener) {
        checkOpen();
        return nativeGenerate(context, prompt, maxNewTokens, temperature, 0, 1.0f, seed,
                              stopTokens, listener);
    }

    public static String isa() {
        return nativeIsa();
    }

    @Override
    public void close() {
        if (context != 0) nativeFreeContext(context);
        if (model != 0) nativeFreeModel(model);
        context = 0;
        model = 0;
    }

    private long checkOpen() {
        if (model == 0) throw new IllegalStateException("Edgert is closed");
        return model;
    }

    private static native long nativeLoadModel(String path, boolean verify);
    private static native void nativeFreeModel(long model);
    private static native long nativeNewContext(long model, int nCtx, int nThreads);
    private static native void nativeFreeContext(long context);
    private static native String nativeMetadataJson(long model);
    private static native int nativeVocabSize(long model);
    private static native int nativeNPast(long context);
    private static native void nativeTrim(long context, int nKeep);
    private static native float[] nativeEval(long model, long context, int[] tokens);
    private static native int[] nativeGenerate(long context, int[] prompt, int maxNewTokens,
                                               float temperature, int topK, float topP, long seed,
                                               int[] stopTokens, TokenListener listener);
    private static native int[] nativeTokenize(long model, String text, int flags);
    private static native String nativeDetokenize(long model, int[] ids, int flags);
    private static native String nativeChatFormat(long model, String[] roles, String[] contents,
                                                  boolean addGenerationPrompt);
    private static native int nativeGenerateText(long context, String prompt, int flags,
                                                 int maxNewTokens, float temperature, int topK,
                                                 float topP, long seed, TextListener listener);
    private static native String nativeIsa();
}
