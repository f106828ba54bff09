/* A tiny TFLite external delegate for tests: it claims every SOFTMAX node of the graph and
 * runs it by calling the builtin kernel it replaced. No TFLite headers are needed: the few
 * C-API structs it touches are declared here with their stable leading fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int TfLiteStatus;
typedef struct { int size; int data[]; } TfLiteIntArray;
typedef struct TfLiteContext TfLiteContext;
typedef struct TfLiteNode TfLiteNode;
typedef struct TfLiteDelegate TfLiteDelegate;

typedef struct {
  void* (*init)(TfLiteContext*, const char*, size_t);
  void (*free)(TfLiteContext*, void*);
  TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*);
  TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*);
  const char* (*profiling_string)(const TfLiteContext*, const TfLiteNode*);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;
  void* async_kernel;
  uint64_t inplace_operator;
  char reserved[128]; /* zeros: newer runtimes may read more fields */
} TfLiteRegistration;

struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(TfLiteContext*, TfLiteIntArray**);
  void* tensors;
  void* impl_;
  void* ResizeTensor;
  void* ReportError;
  void* AddTensors;
  TfLiteStatus (*GetNodeAndRegistration)(TfLiteContext*, int, TfLiteNode**, TfLiteRegistration**);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(TfLiteContext*, TfLiteRegistration,
                                                         const TfLiteIntArray*, TfLiteDelegate*);
};

struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext*, TfLiteDelegate*);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
  char reserved[64];
};

typedef struct {
  TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

enum { kSoftmax = 25, kDelegate = 51 };

/* TfLiteNode: inputs, outputs, intermediates, temporaries, user_data, builtin_data,
 * custom_initial_data, custom_initial_data_size, delegate, might_have_side_effect. Copied by
 * value: the node list of the interpreter may move when later delegates add nodes. */
typedef struct { void* p[7]; int size; void* delegate; _Bool side_effect; } NodeCopy;

typedef struct {
  NodeCopy node;
  TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*);
  TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*);
} Replaced;

/* The kernel of one partition: the replaced builtin nodes, in execution order. */
typedef struct { int n; Replaced nodes[]; } Partition;

static void* k_init(TfLiteContext* ctx, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* p = (const TfLiteDelegateParams*)buffer;
  Partition* part = calloc(1, sizeof(Partition) + sizeof(Replaced) * p->nodes_to_replace->size);
  part->n = p->nodes_to_replace->size;
  for (int i = 0; i < part->n; ++i) {
    TfLiteNode* node; TfLiteRegistration* reg;
    if (ctx->GetNodeAndRegistration(ctx, p->nodes_to_replace->data[i], &node, &reg) != 0) {
      free(part);
      return NULL;
    }
    memcpy(&part->nodes[i].node, node, sizeof(NodeCopy));
    part->nodes[i].prepare = reg->prepare;
    part->nodes[i].invoke = reg->invoke;
  }
  return part;
}

static void k_free(TfLiteContext* ctx, void* data) { (void)ctx; free(data); }

/* user_data is the 5th pointer of TfLiteNode (inputs, outputs, intermediates, temporaries). */
static Partition* part_of(TfLiteNode* node) { return ((Partition**)node)[4]; }

static TfLiteStatus run_all(TfLiteContext* ctx, TfLiteNode* node, int invoke) {
  Partition* part = part_of(node);
  if (part == NULL) return 1;
  for (int i = 0; i < part->n; ++i) {
    Replaced* r = &part->nodes[i];
    TfLiteStatus (*fn)(TfLiteContext*, TfLiteNode*) = invoke ? r->invoke : r->prepare;
    if (fn && fn(ctx, (TfLiteNode*)&r->node) != 0) return 1;
  }
  return 0;
}

static TfLiteStatus k_prepare(TfLiteContext* ctx, TfLiteNode* node) { return run_all(ctx, node, 0); }
static TfLiteStatus k_invoke(TfLiteContext* ctx, TfLiteNode* node) { return run_all(ctx, node, 1); }

static TfLiteStatus d_prepare(TfLiteContext* ctx, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan;
  if (ctx->GetExecutionPlan(ctx, &plan) != 0) return 1;
  TfLiteIntArray* take = malloc(sizeof(TfLiteIntArray) + sizeof(int) * plan->size);
  take->size = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node; TfLiteRegistration* reg;
    if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) != 0) { free(take); return 1; }
    if (reg->builtin_code == kSoftmax) take->data[take->size++] = plan->data[i];
  }
  TfLiteStatus st = 0;
  if (take->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof(kernel));
    kernel.init = k_init; kernel.free = k_free; kernel.prepare = k_prepare;
    kernel.invoke = k_invoke; kernel.builtin_code = kDelegate;
    kernel.custom_name = "EdgepackPassthroughDelegate"; kernel.version = 1;
    st = ctx->ReplaceNodeSubsetsWithDelegateKernels(ctx, kernel, take, delegate);
  }
  free(take);
  return st;
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  (void)keys; (void)values; (void)n; (void)report_error;
  TfLiteDelegate* d = calloc(1, sizeof(TfLiteDelegate));
  d->Prepare = d_prepare;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* d) { free(d); }
