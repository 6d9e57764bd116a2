package org.edgert;

/**
 * One model and one conversation (KV cache) from an .edgt file, over libedgert's C API.
 *
 * <p>Token ids in, token ids out: the tokenizer travels inside the file as tokenizer.json
 * ({@link #metadataJson()}); an app feeds it to its tokenizer library of choice. Not thread safe:
 * use one instance from one thread (a background thread, never the UI thread).
 */
public final class Edgert implements AutoCloseable {
    static {
        System.loadLibrary("edgert_jni");
    }

    /** Receives each generated token; return false to stop generating. */
    public interface TokenListener {
        boolean onToken(int token);
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
    private static native String nativeIsa();
}
