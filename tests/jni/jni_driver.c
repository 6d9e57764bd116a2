/*
 * jni_driver.c — runs the Android JNI bridge (android_demo/.../edgert_jni.cpp) without a JVM:
 * a minimal JNIEnv whose functions are the few the bridge calls, over plain C objects. Built
 * with the aarch64 cross compiler and run under qemu-aarch64 by tests/test_android_jni.py, so the
 * bridge and libedgert an arm64 phone loads are exercised on these x86 machines (no NDK here).
 * Objects are never freed: the process is short-lived.
 *
 *     jni_driver MODEL.edgt N_NEW PROMPT TEXT
 * prints the lines the test compares with the Python API's results.
 */
#include <jni.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum Kind { K_STRING, K_BYTES, K_INTS, K_FLOATS, K_OBJECTS, K_CLASS, K_LISTENER };

typedef struct Obj {
    enum Kind kind;
    size_t len;      /* bytes of a string, elements of an array */
    void *data;
    const char *name;  /* K_CLASS */
} Obj;

static Obj *new_obj(enum Kind kind, size_t len, size_t elem) {
    Obj *o = calloc(1, sizeof *o);
    o->kind = kind;
    o->len = len;
    o->data = calloc(len + 1, elem);
    return o;
}

static Obj *jstr(const char *s) {
    Obj *o = new_obj(K_STRING, strlen(s), 1);
    memcpy(o->data, s, o->len);
    return o;
}

/* methods are identified by their name */
static const char *const kMethods[] = {"getBytes", "<init>", "onText", "onToken"};
enum { M_GET_BYTES, M_STRING_CTOR, M_ON_TEXT, M_ON_TOKEN };

static char *pending_class, *pending_message;  /* the pending Java exception, if any */
static char generated[16384];
static size_t generated_len;
static int n_pieces;

static jclass JNICALL find_class(JNIEnv *env, const char *name) {
    (void)env;
    Obj *o = new_obj(K_CLASS, 0, 1);
    o->name = name;
    return (jclass)o;
}
static jint JNICALL throw_new(JNIEnv *env, jclass cls, const char *msg) {
    (void)env;
    pending_class = strdup(((Obj *)cls)->name);
    pending_message = strdup(msg);
    return 0;
}
static jboolean JNICALL exception_check(JNIEnv *env) { (void)env; return pending_class != NULL; }
static jsize JNICALL get_array_length(JNIEnv *env, jarray a) { (void)env; return (jsize)((Obj *)a)->len; }
static void JNICALL get_int_region(JNIEnv *env, jintArray a, jsize s, jsize n, jint *buf) {
    (void)env;
    memcpy(buf, (jint *)((Obj *)a)->data + s, (size_t)n * sizeof(jint));
}
static jintArray JNICALL new_int_array(JNIEnv *env, jsize n) { (void)env; return (jintArray)new_obj(K_INTS, (size_t)n, sizeof(jint)); }
static void JNICALL set_int_region(JNIEnv *env, jintArray a, jsize s, jsize n, const jint *buf) {
    (void)env;
    memcpy((jint *)((Obj *)a)->data + s, buf, (size_t)n * sizeof(jint));
}
static jfloatArray JNICALL new_float_array(JNIEnv *env, jsize n) { (void)env; return (jfloatArray)new_obj(K_FLOATS, (size_t)n, sizeof(jfloat)); }
static void JNICALL set_float_region(JNIEnv *env, jfloatArray a, jsize s, jsize n, const jfloat *buf) {
    (void)env;
    memcpy((jfloat *)((Obj *)a)->data + s, buf, (size_t)n * sizeof(jfloat));
}
static jbyteArray JNICALL new_byte_array(JNIEnv *env, jsize n) { (void)env; return (jbyteArray)new_obj(K_BYTES, (size_t)n, 1); }
static void JNICALL set_byte_region(JNIEnv *env, jbyteArray a, jsize s, jsize n, const jbyte *buf) {
    (void)env;
    memcpy((char *)((Obj *)a)->data + s, buf, (size_t)n);
}
static void JNICALL get_byte_region(JNIEnv *env, jbyteArray a, jsize s, jsize n, jbyte *buf) {
    (void)env;
    memcpy(buf, (char *)((Obj *)a)->data + s, (size_t)n);
}
static jstring JNICALL new_string_utf(JNIEnv *env, const char *s) { (void)env; return (jstring)jstr(s); }
static jclass JNICALL get_object_class(JNIEnv *env, jobject o) { return find_class(env, ((Obj *)o)->name ? ((Obj *)o)->name : "?"); }
static jmethodID JNICALL get_method_id(JNIEnv *env, jclass cls, const char *name, const char *sig) {
    (void)env; (void)cls; (void)sig;
    for (size_t i = 0; i < sizeof kMethods / sizeof kMethods[0]; ++i) {
        if (strcmp(kMethods[i], name) == 0) return (jmethodID)&kMethods[i];
    }
    return NULL;
}
static int method(jmethodID m) { return (int)((const char *const *)m - kMethods); }
/* The C++ JNIEnv wrappers (env->CallBooleanMethod(...) etc.) forward to the ...V variants with a
 * va_list, so those are the ones the bridge reaches. */
static jobject JNICALL call_object_method_v(JNIEnv *env, jobject obj, jmethodID m, va_list ap) {
    (void)env; (void)ap;
    if (method(m) != M_GET_BYTES) abort();
    Obj *s = (Obj *)obj, *b = new_obj(K_BYTES, s->len, 1);
    memcpy(b->data, s->data, s->len);
    return (jobject)b;
}
static jobject JNICALL new_object_v(JNIEnv *env, jclass cls, jmethodID m, va_list ap) {
    (void)env; (void)cls;
    if (method(m) != M_STRING_CTOR) abort();
    Obj *bytes = (Obj *)va_arg(ap, jobject);
    Obj *s = new_obj(K_STRING, bytes->len, 1);
    memcpy(s->data, bytes->data, bytes->len);
    return (jobject)s;
}
static jboolean JNICALL call_boolean_method_v(JNIEnv *env, jobject obj, jmethodID m, va_list ap) {
    (void)env; (void)obj;
    if (method(m) == M_ON_TEXT) {
        Obj *piece = (Obj *)va_arg(ap, jobject);
        if (generated_len + piece->len < sizeof generated) {
            memcpy(generated + generated_len, piece->data, piece->len);
            generated_len += piece->len;
        }
        ++n_pieces;
    }
    return JNI_TRUE;
}
static jobject JNICALL get_object_array_element(JNIEnv *env, jobjectArray a, jsize i) {
    (void)env;
    return ((jobject *)((Obj *)a)->data)[i];
}
static void JNICALL delete_local_ref(JNIEnv *env, jobject o) { (void)env; (void)o; }

/* the bridge's entry points (edgert_jni.cpp) */
jlong Java_org_edgert_Edgert_nativeLoadModel(JNIEnv *, jclass, jstring, jboolean);
jlong Java_org_edgert_Edgert_nativeNewContext(JNIEnv *, jclass, jlong, jint, jint);
void Java_org_edgert_Edgert_nativeTrim(JNIEnv *, jclass, jlong, jint);
jintArray Java_org_edgert_Edgert_nativeTokenize(JNIEnv *, jclass, jlong, jstring, jint);
jstring Java_org_edgert_Edgert_nativeDetokenize(JNIEnv *, jclass, jlong, jintArray, jint);
jstring Java_org_edgert_Edgert_nativeChatFormat(JNIEnv *, jclass, jlong, jobjectArray, jobjectArray, jboolean);
jint Java_org_edgert_Edgert_nativeGenerateText(JNIEnv *, jclass, jlong, jstring, jint, jint, jfloat, jint, jfloat,
                                               jlong, jobject);
jintArray Java_org_edgert_Edgert_nativeGenerate(JNIEnv *, jclass, jlong, jintArray, jint, jfloat, jint, jfloat, jlong,
                                                jintArray, jobject);
jfloatArray Java_org_edgert_Edgert_nativeEval(JNIEnv *, jclass, jlong, jlong, jintArray);
jint Java_org_edgert_Edgert_nativeVocabSize(JNIEnv *, jclass, jlong);

static void print_hex(const char *label, const char *data, size_t len) {
    printf("%s ", label);
    for (size_t i = 0; i < len; ++i) printf("%02x", (unsigned char)data[i]);
    printf("%s", len ? "" : "-");
}

static const char *take_exception(void) {
    static char status[64];
    if (!pending_class) return "none";
    snprintf(status, sizeof status, "%s", pending_message);
    char *colon = strchr(status, ':');
    if (colon) *colon = '\0';
    free(pending_class);
    pending_class = NULL;
    return status;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.edgt N_NEW PROMPT TEXT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);  /* a crash must not swallow what was printed */
    struct JNINativeInterface_ table;
    memset(&table, 0, sizeof table);
    table.FindClass = find_class;
    table.ThrowNew = throw_new;
    table.ExceptionCheck = exception_check;
    table.GetArrayLength = get_array_length;
    table.GetIntArrayRegion = get_int_region;
    table.NewIntArray = new_int_array;
    table.SetIntArrayRegion = set_int_region;
    table.NewFloatArray = new_float_array;
    table.SetFloatArrayRegion = set_float_region;
    table.NewByteArray = new_byte_array;
    table.SetByteArrayRegion = set_byte_region;
    table.GetByteArrayRegion = get_byte_region;
    table.NewStringUTF = new_string_utf;
    table.GetObjectClass = get_object_class;
    table.GetMethodID = get_method_id;
    table.CallObjectMethodV = call_object_method_v;
    table.NewObjectV = new_object_v;
    table.CallBooleanMethodV = call_boolean_method_v;
    table.GetObjectArrayElement = get_object_array_element;
    table.DeleteLocalRef = delete_local_ref;
    const struct JNINativeInterface_ *functions = &table;
    JNIEnv *env = (JNIEnv *)&functions;

    jlong model = Java_org_edgert_Edgert_nativeLoadModel(env, NULL, (jstring)jstr(argv[1]), JNI_FALSE);
    if (pending_class) {
        printf("load %s\n", take_exception());
        return 1;
    }
    jlong ctx = Java_org_edgert_Edgert_nativeNewContext(env, NULL, model, 256, 1);
    const jint n_new = atoi(argv[2]);

    Obj *ids = (Obj *)Java_org_edgert_Edgert_nativeTokenize(env, NULL, model, (jstring)jstr(argv[4]), 0);
    printf("tokenize ");
    for (size_t i = 0; i < ids->len; ++i) printf("%s%d", i ? "," : "", ((jint *)ids->data)[i]);
    Obj *back = (Obj *)Java_org_edgert_Edgert_nativeDetokenize(env, NULL, model, (jintArray)ids, 0);
    print_hex("\nroundtrip_hex", back->data, back->len);

    Obj *listener = new_obj(K_LISTENER, 0, 1);
    listener->name = "TextListener";
    jint n = Java_org_edgert_Edgert_nativeGenerateText(env, NULL, ctx, (jstring)jstr(argv[3]), 3, n_new, 0.0f, 0,
                                                       1.0f, 0, (jobject)listener);
    print_hex("\ntext_hex", generated, generated_len);
    printf(" %d\n", (int)n);

    Java_org_edgert_Edgert_nativeTrim(env, NULL, ctx, 0);
    Obj *prompt = (Obj *)Java_org_edgert_Edgert_nativeTokenize(env, NULL, model, (jstring)jstr(argv[3]), 1);
    Obj *out = (Obj *)Java_org_edgert_Edgert_nativeGenerate(env, NULL, ctx, (jintArray)prompt, n_new, 0.0f, 0, 1.0f,
                                                            0, NULL, NULL);
    printf("greedy ");
    for (size_t i = 0; i < out->len; ++i) printf("%s%d", i ? "," : "", ((jint *)out->data)[i]);

    Obj *bad = new_obj(K_INTS, 1, sizeof(jint));
    ((jint *)bad->data)[0] = Java_org_edgert_Edgert_nativeVocabSize(env, NULL, model) + 5;
    Java_org_edgert_Edgert_nativeEval(env, NULL, model, ctx, (jintArray)bad);
    printf("\nbad_token %s\n", take_exception());

    Obj *roles = new_obj(K_OBJECTS, 1, sizeof(jobject)), *contents = new_obj(K_OBJECTS, 1, sizeof(jobject));
    ((jobject *)roles->data)[0] = (jobject)jstr("user");
    ((jobject *)contents->data)[0] = (jobject)jstr("hi");
    Java_org_edgert_Edgert_nativeChatFormat(env, NULL, model, (jobjectArray)roles, (jobjectArray)contents, JNI_TRUE);
    printf("chat_error %s\n", take_exception());
    return 0;
}
