// edgert_jni.cpp — JNI bridge from org.edgert.Edgert to the C API in edgert.h, and nothing else.
//
// Handles cross the boundary as jlong. Every native failure becomes an org.edgert.EdgertException
// carrying the edgert_status name and edgert_last_error(), so the app never sees a crash for a
// bad file or a bad token id. Callbacks into Java (the token listener) happen on the calling
// thread, which is the thread that called generate(): the C API never calls back from its pool.
#include <jni.h>

#include <string>
#include <vector>

#include "edgert.h"

namespace {

void throw_status(JNIEnv* env, edgert_status st) {
    jclass cls = env->FindClass("org/edgert/EdgertException");
    if (cls == nullptr) return;  // NoClassDefFoundError already pending
    std::string msg = std::string(edgert_status_string(st)) + ": " + edgert_last_error();
    env->ThrowNew(cls, msg.c_str());
}

void throw_illegal(JNIEnv* env, const char* msg) {
    jclass cls = env->FindClass("java/lang/IllegalArgumentException");
    if (cls != nullptr) env->ThrowNew(cls, msg);
}

// Copies a Java int[] into a vector; false (with an exception pending) on null.
bool read_ids(JNIEnv* env, jintArray arr, std::vector<int32_t>* out) {
    if (arr == nullptr) {
        throw_illegal(env, "token array is null");
        return false;
    }
    jsize n = env->GetArrayLength(arr);
    out->resize(static_cast<size_t>(n));
    if (n > 0) env->GetIntArrayRegion(arr, 0, n, reinterpret_cast<jint*>(out->data()));
    return true;
}

struct ListenerCall {
    JNIEnv* env;
    jobject listener;   // may be null
    jmethodID on_token;
    std::vector<int32_t> tokens;
};

int32_t on_token(int32_t token, void* user) {
    auto* call = static_cast<ListenerCall*>(user);
    call->tokens.push_back(token);
    if (call->listener == nullptr) return 0;
    jboolean go_on = call->env->CallBooleanMethod(call->listener, call->on_token, token);
    // A Java exception inside the listener stops generation; it stays pending for the caller.
    if (call->env->ExceptionCheck()) return 1;
    return go_on ? 0 : 1;
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_edgert_Edgert_nativeLoadModel(JNIEnv* env, jclass, jstring path,
                                                              jboolean verify) {
    if (path == nullptr) {
        throw_illegal(env, "model path is null");
        return 0;
    }
    const char* cpath = env->GetStringUTFChars(path, nullptr);
    edgert_model_params mp = edgert_model_default_params();
    mp.verify_checksums = verify ? 1 : 0;
    edgert_model* model = nullptr;
    edgert_status st = edgert_model_load(cpath, &mp, &model);
    env->ReleaseStringUTFChars(path, cpath);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return 0;
    }
    return reinterpret_cast<jlong>(model);
}

JNIEXPORT void JNICALL Java_org_edgert_Edgert_nativeFreeModel(JNIEnv*, jclass, jlong model) {
    edgert_model_free(reinterpret_cast<edgert_model*>(model));
}

JNIEXPORT jlong JNICALL Java_org_edgert_Edgert_nativeNewContext(JNIEnv* env, jclass, jlong model,
                                                               jint n_ctx, jint n_threads) {
    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    edgert_context* ctx = nullptr;
    edgert_status st = edgert_context_new(reinterpret_cast<edgert_model*>(model), &cp, &ctx);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return 0;
    }
    return reinterpret_cast<jlong>(ctx);
}

JNIEXPORT void JNICALL Java_org_edgert_Edgert_nativeFreeContext(JNIEnv*, jclass, jlong ctx) {
    edgert_context_free(reinterpret_cast<edgert_context*>(ctx));
}

JNIEXPORT jstring JNICALL Java_org_edgert_Edgert_nativeMetadataJson(JNIEnv* env, jclass,
                                                                   jlong model) {
    size_t len = 0;
    const char* json = edgert_model_metadata_json(reinterpret_cast<edgert_model*>(model), &len);
    if (json == nullptr) {
        throw_status(env, EDGERT_ERR_INVALID_ARGUMENT);
        return nullptr;
    }
    // NewStringUTF wants modified UTF-8; go through a byte[] and String(byte[], "UTF-8") so
    // characters outside the BMP in the tokenizer survive.
    jbyteArray bytes = env->NewByteArray(static_cast<jsize>(len));
    env->SetByteArrayRegion(bytes, 0, static_cast<jsize>(len), reinterpret_cast<const jbyte*>(json));
    jclass string_cls = env->FindClass("java/lang/String");
    jmethodID ctor = env->GetMethodID(string_cls, "<init>", "([BLjava/lang/String;)V");
    jstring charset = env->NewStringUTF("UTF-8");
    return static_cast<jstring>(env->NewObject(string_cls, ctor, bytes, charset));
}

JNIEXPORT jint JNICALL Java_org_edgert_Edgert_nativeVocabSize(JNIEnv* env, jclass, jlong model) {
    edgert_model_info info;
    edgert_status st = edgert_model_get_info(reinterpret_cast<edgert_model*>(model), &info);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return 0;
    }
    return info.vocab_size;
}

JNIEXPORT jint JNICALL Java_org_edgert_Edgert_nativeNPast(JNIEnv*, jclass, jlong ctx) {
    return edgert_context_n_past(reinterpret_cast<edgert_context*>(ctx));
}

JNIEXPORT void JNICALL Java_org_edgert_Edgert_nativeTrim(JNIEnv* env, jclass, jlong ctx,
                                                        jint n_keep) {
    edgert_status st = edgert_context_trim(reinterpret_cast<edgert_context*>(ctx), n_keep);
    if (st != EDGERT_OK) throw_status(env, st);
}

JNIEXPORT jfloatArray JNICALL Java_org_edgert_Edgert_nativeEval(JNIEnv* env, jclass, jlong model,
                                                               jlong ctx, jintArray ids) {
    std::vector<int32_t> tokens;
    if (!read_ids(env, ids, &tokens)) return nullptr;
    jint vocab = Java_org_edgert_Edgert_nativeVocabSize(env, nullptr, model);
    if (env->ExceptionCheck()) return nullptr;
    std::vector<float> logits(static_cast<size_t>(vocab));
    edgert_status st = edgert_eval(reinterpret_cast<edgert_context*>(ctx), tokens.data(),
                                   static_cast<int32_t>(tokens.size()), logits.data(), 0);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    jfloatArray out = env->NewFloatArray(vocab);
    env->SetFloatArrayRegion(out, 0, vocab, logits.data());
    return out;
}

JNIEXPORT jintArray JNICALL Java_org_edgert_Edgert_nativeGenerate(
    JNIEnv* env, jclass, jlong ctx, jintArray prompt, jint max_new_tokens, jfloat temperature,
    jint top_k, jfloat top_p, jlong seed, jintArray stop_ids, jobject listener) {
    std::vector<int32_t> tokens, stops;
    if (!read_ids(env, prompt, &tokens)) return nullptr;
    if (stop_ids != nullptr && !read_ids(env, stop_ids, &stops)) return nullptr;

    edgert_sampler_params sp = edgert_sampler_default_params();
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.seed = static_cast<uint64_t>(seed);
    edgert_sampler* sampler = nullptr;
    edgert_status st = edgert_sampler_new(&sp, &sampler);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    ListenerCall call{env, listener, nullptr, {}};
    if (listener != nullptr) {
        jclass cls = env->GetObjectClass(listener);
        call.on_token = env->GetMethodID(cls, "onToken", "(I)Z");
        if (call.on_token == nullptr) {  // NoSuchMethodError pending
            edgert_sampler_free(sampler);
            return nullptr;
        }
    }
    int32_t n_generated = 0;
    st = edgert_generate(reinterpret_cast<edgert_context*>(ctx), sampler, tokens.data(),
                         static_cast<int32_t>(tokens.size()), max_new_tokens, stops.data(),
                         static_cast<int32_t>(stops.size()), on_token, &call, &n_generated);
    edgert_sampler_free(sampler);
    if (env->ExceptionCheck()) return nullptr;  // thrown by the listener
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    jintArray out = env->NewIntArray(static_cast<jsize>(call.tokens.size()));
    env->SetIntArrayRegion(out, 0, static_cast<jsize>(call.tokens.size()),
                           reinterpret_cast<const jint*>(call.tokens.data()));
    return out;
}

JNIEXPORT jstring JNICALL Java_org_edgert_Edgert_nativeIsa(JNIEnv* env, jclass) {
    return env->NewStringUTF(edgert_isa());
}

}  // extern "C"
