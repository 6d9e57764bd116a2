// edgert_jni.cpp — JNI bridge from org.edgert.Edgert to the C API in edgert.h, and nothing else.
//
// Handles cross the boundary as jlong. Every native failure becomes an org.edgert.EdgertException
// carrying the edgert_status name and edgert_last_error(), so the app never sees a crash for a
// bad file or a bad token id. Callbacks into Java (the token and text listeners) happen on the
// calling thread, which is the thread that called generate(): the C API never calls back from
// its pool.
//
// Text crosses as real UTF-8 (String.getBytes("UTF-8") / new String(bytes, "UTF-8")), never as
// JNI's "modified UTF-8", which would mangle emoji and other characters outside the BMP.
// The JNI calls used here are the ones tests/jni/jni_driver.c emulates to run this bridge
// without a JVM under qemu-aarch64; keep the two in step.
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

// A Java String as UTF-8 bytes; false (with an exception pending) on null.
bool java_to_utf8(JNIEnv* env, jstring s, std::string* out, const char* what) {
    if (s == nullptr) {
        throw_illegal(env, what);
        return false;
    }
    jclass string_cls = env->FindClass("java/lang/String");
    jmethodID get_bytes = env->GetMethodID(string_cls, "getBytes", "(Ljava/lang/String;)[B");
    jstring charset = env->NewStringUTF("UTF-8");
    auto bytes = static_cast<jbyteArray>(env->CallObjectMethod(s, get_bytes, charset));
    if (env->ExceptionCheck() || bytes == nullptr) return false;
    const jsize n = env->GetArrayLength(bytes);
    out->resize(static_cast<size_t>(n));
    if (n > 0) env->GetByteArrayRegion(bytes, 0, n, reinterpret_cast<jbyte*>(&(*out)[0]));
    env->DeleteLocalRef(bytes);
    env->DeleteLocalRef(charset);
    return true;
}

jstring utf8_to_java(JNIEnv* env, const char* data, size_t len) {
    jbyteArray bytes = env->NewByteArray(static_cast<jsize>(len));
    if (bytes == nullptr) return nullptr;
    env->SetByteArrayRegion(bytes, 0, static_cast<jsize>(len), reinterpret_cast<const jbyte*>(data));
    jclass string_cls = env->FindClass("java/lang/String");
    jmethodID ctor = env->GetMethodID(string_cls, "<init>", "([BLjava/lang/String;)V");
    jstring charset = env->NewStringUTF("UTF-8");
    auto out = static_cast<jstring>(env->NewObject(string_cls, ctor, bytes, charset));
    env->DeleteLocalRef(bytes);
    env->DeleteLocalRef(charset);
    return out;
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

struct TextListenerCall {
    JNIEnv* env;
    jobject listener;
    jmethodID on_text;
};

int32_t on_text(const char* text, size_t len, void* user) {
    auto* call = static_cast<TextListenerCall*>(user);
    jstring piece = utf8_to_java(call->env, text, len);
    if (piece == nullptr) return 1;  // OutOfMemoryError pending
    jboolean go_on = call->env->CallBooleanMethod(call->listener, call->on_text, piece);
    call->env->DeleteLocalRef(piece);
    if (call->env->ExceptionCheck()) return 1;  // stays pending for the caller
    return go_on ? 0 : 1;
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_edgert_Edgert_nativeLoadModel(JNIEnv* env, jclass, jstring path,
                                                              jboolean verify) {
    std::string utf8_path;
    if (!java_to_utf8(env, path, &utf8_path, "model path is null")) return 0;
    edgert_model_params mp = edgert_model_default_params();
    mp.verify_checksums = verify ? 1 : 0;
    edgert_model* model = nullptr;
    edgert_status st = edgert_model_load(utf8_path.c_str(), &mp, &model);
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
    return utf8_to_java(env, json, len);
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

JNIEXPORT jintArray JNICALL Java_org_edgert_Edgert_nativeTokenize(JNIEnv* env, jclass, jlong model,
                                                                 jstring text, jint flags) {
    std::string t;
    if (!java_to_utf8(env, text, &t, "text is null")) return nullptr;
    std::vector<int32_t> ids(t.size() + 3);
    int32_t n = 0;
    edgert_status st = edgert_tokenize(reinterpret_cast<edgert_model*>(model), t.data(), t.size(),
                                       flags, ids.data(), static_cast<int32_t>(ids.size()), &n);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    jintArray out = env->NewIntArray(n);
    if (out != nullptr) env->SetIntArrayRegion(out, 0, n, reinterpret_cast<const jint*>(ids.data()));
    return out;
}

JNIEXPORT jstring JNICALL Java_org_edgert_Edgert_nativeDetokenize(JNIEnv* env, jclass, jlong model,
                                                                 jintArray ids, jint flags) {
    std::vector<int32_t> tokens;
    if (!read_ids(env, ids, &tokens)) return nullptr;
    auto* m = reinterpret_cast<edgert_model*>(model);
    size_t len = 0;
    edgert_status st = edgert_detokenize(m, tokens.data(), static_cast<int32_t>(tokens.size()), flags,
                                         nullptr, 0, &len);
    std::string text(len + 1, '\0');
    if (st == EDGERT_OK) {
        st = edgert_detokenize(m, tokens.data(), static_cast<int32_t>(tokens.size()), flags, &text[0],
                               text.size(), &len);
    }
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    return utf8_to_java(env, text.data(), len);
}

// roles[i], contents[i]: the conversation; null template = the model's own.
JNIEXPORT jstring JNICALL Java_org_edgert_Edgert_nativeChatFormat(JNIEnv* env, jclass, jlong model,
                                                                 jobjectArray roles,
                                                                 jobjectArray contents,
                                                                 jboolean add_generation_prompt) {
    if (roles == nullptr || contents == nullptr ||
        env->GetArrayLength(roles) != env->GetArrayLength(contents)) {
        throw_illegal(env, "roles and contents must be arrays of the same length");
        return nullptr;
    }
    const jsize n = env->GetArrayLength(roles);
    std::vector<std::string> r(static_cast<size_t>(n)), c(static_cast<size_t>(n));
    for (jsize i = 0; i < n; ++i) {
        auto role = static_cast<jstring>(env->GetObjectArrayElement(roles, i));
        auto content = static_cast<jstring>(env->GetObjectArrayElement(contents, i));
        if (!java_to_utf8(env, role, &r[size_t(i)], "a message role is null") ||
            !java_to_utf8(env, content, &c[size_t(i)], "a message content is null")) {
            return nullptr;
        }
    }
    std::vector<edgert_chat_message> messages(static_cast<size_t>(n));
    for (size_t i = 0; i < messages.size(); ++i) messages[i] = {r[i].c_str(), c[i].c_str()};
    auto* m = reinterpret_cast<edgert_model*>(model);
    size_t len = 0;
    edgert_status st = edgert_chat_format(m, nullptr, messages.data(), n, add_generation_prompt ? 1 : 0,
                                          nullptr, 0, &len);
    std::string text(len + 1, '\0');
    if (st == EDGERT_OK) {
        st = edgert_chat_format(m, nullptr, messages.data(), n, add_generation_prompt ? 1 : 0, &text[0],
                                text.size(), &len);
    }
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return nullptr;
    }
    return utf8_to_java(env, text.data(), len);
}

// Streams generated text to listener.onText(String) (return false to stop); returns the number
// of tokens generated.
JNIEXPORT jint JNICALL Java_org_edgert_Edgert_nativeGenerateText(
    JNIEnv* env, jclass, jlong ctx, jstring prompt, jint flags, jint max_new_tokens,
    jfloat temperature, jint top_k, jfloat top_p, jlong seed, jobject listener) {
    std::string text;
    if (!java_to_utf8(env, prompt, &text, "prompt is null")) return 0;
    if (listener == nullptr) {
        throw_illegal(env, "listener is null");
        return 0;
    }
    TextListenerCall call{env, listener, nullptr};
    jclass cls = env->GetObjectClass(listener);
    call.on_text = env->GetMethodID(cls, "onText", "(Ljava/lang/String;)Z");
    if (call.on_text == nullptr) return 0;  // NoSuchMethodError pending
    edgert_sampler_params sp = edgert_sampler_default_params();
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.seed = static_cast<uint64_t>(seed);
    edgert_sampler* sampler = nullptr;
    edgert_status st = edgert_sampler_new(&sp, &sampler);
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return 0;
    }
    int32_t n_generated = 0;
    st = edgert_generate_text(reinterpret_cast<edgert_context*>(ctx), sampler, text.data(), text.size(),
                              flags, max_new_tokens, on_text, &call, &n_generated);
    edgert_sampler_free(sampler);
    if (env->ExceptionCheck()) return 0;  // thrown by the listener
    if (st != EDGERT_OK) {
        throw_status(env, st);
        return 0;
    }
    return n_generated;
}

JNIEXPORT jstring JNICALL Java_org_edgert_Edgert_nativeIsa(JNIEnv* env, jclass) {
    return env->NewStringUTF(edgert_isa());
}

}  // extern "C"
