// Builds the Graphs dashboard's GraphDef from a module tree and the autograd
// graph of one forward pass (see model_graph.h).
#include "trainbus/tensorboard/model_graph.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace trainbus::tensorboard {
namespace {

using torch::autograd::Node;

// "torch::nn::Conv2dImpl" -> "Conv2d".
std::string ClassName(const torch::nn::Module& m) {
  std::string name = m.name();
  if (const size_t colon = name.rfind("::"); colon != std::string::npos) {
    name = name.substr(colon + 2);
  }
  if (absl::EndsWith(name, "Impl")) name.resize(name.size() - 4);
  return name.empty() ? "Module" : name;
}

// "torch::autograd::generated::ConvolutionBackward0" -> "convolution".
std::string OpName(const Node& node) {
  std::string name = node.name();
  if (const size_t colon = name.rfind("::"); colon != std::string::npos) {
    name = name.substr(colon + 2);
  }
  if (const size_t b = name.rfind("Backward"); b != std::string::npos && b > 0) name.resize(b);
  if (!name.empty()) name[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[0])));
  return name.empty() ? "op" : name;
}

proto::DataType GraphDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return proto::DT_FLOAT;
    case at::kDouble: return proto::DT_DOUBLE;
    case at::kInt: return proto::DT_INT32;
    case at::kByte: return proto::DT_UINT8;
    case at::kLong: return proto::DT_INT64;
    case at::kBool: return proto::DT_BOOL;
    default: return proto::DT_INVALID;
  }
}

// PyTorch's names: "float32", not c10's "Float".
std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return std::string(c10::toString(t));
  }
}

void SetShape(proto::NodeDef* node, at::IntArrayRef sizes, at::ScalarType dtype) {
  proto::TensorShapeProto* shape =
      (*node->mutable_attr())["_output_shapes"].mutable_list()->add_shape();
  for (int64_t d : sizes) shape->add_dim()->set_size(d);
  (*node->mutable_attr())["dtype"].set_type(GraphDtype(dtype));
  (*node->mutable_attr())["attr"].set_s(
      absl::StrCat("[", absl::StrJoin(sizes, ", "), "] ", DtypeName(dtype)));
}

// Builds the GraphDef: the module tree first, then the recorded operations.
class GraphBuilder {
 public:
  explicit GraphBuilder(const torch::nn::Module& model) {
    graph_.mutable_versions()->set_producer(22);
    root_scope_ = ClassName(model);
    AddModule(model, root_scope_);
  }

  const std::string& root_scope() const { return root_scope_; }
  static std::string ChildScope(const std::string& parent, const std::string& key,
                                const torch::nn::Module& child) {
    return absl::StrCat(parent, "/", ClassName(child), "[", key, "]");
  }

  // The input node, once the sample is known.
  void AddInput(const at::Tensor& input) {
    proto::NodeDef* node = graph_.add_node();
    node->set_name("input");
    node->set_op("Input");
    SetShape(node, input.sizes(), input.scalar_type());
    has_input_ = true;
  }

  // Every node reachable from `tip` not yet seen is named in `scope` (unless
  // it reads a parameter, which puts it in the parameter's module). Returns
  // the name of `tip`'s node, "" when it has none.
  std::string Collect(const at::Tensor& tip, const std::string& scope) {
    const std::shared_ptr<Node>& fn = tip.grad_fn();
    if (!fn) return "";
    // Post-order: producers before consumers, the forward order.
    if (names_.count(fn.get())) return NameOf(fn.get());
    std::vector<std::shared_ptr<Node>> order;
    std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{fn, 0}};
    std::unordered_set<Node*> visited{fn.get()};
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const auto& edges = node->next_edges();
      if (next < edges.size()) {
        const std::shared_ptr<Node> child = edges[next++].function;
        if (child && !names_.count(child.get()) && visited.insert(child.get()).second) {
          stack.push_back({child, 0});
        }
        continue;
      }
      order.push_back(node);
      stack.pop_back();
    }
    for (const std::shared_ptr<Node>& node : order) {
      // Held until the graph is built: names are keyed by address, which a
      // freed node could hand to a new one.
      recorded_.push_back(node);
      AddOp(node.get(), scope);
    }
    return NameOf(fn.get());
  }

  // A module that ran no operation: a pass-through node in its scope, which
  // later readers of what it passed on read instead.
  void AddPassThrough(const std::string& scope, const std::string& class_name,
                      const at::Tensor& tip) {
    proto::NodeDef* node = graph_.add_node();
    node->set_name(Unique(absl::StrCat(scope, "/", absl::AsciiStrToLower(class_name))));
    node->set_op(class_name);
    const std::string producer =
        tip.grad_fn() ? NameOf(tip.grad_fn().get()) : (has_input_ ? input_alias_ : "");
    if (!producer.empty()) node->add_input(producer);
    SetShape(node, tip.sizes(), tip.scalar_type());
    if (tip.grad_fn()) alias_[tip.grad_fn().get()] = node->name();
    else input_alias_ = node->name();
  }

  void AddOutput(const at::Tensor& output) {
    proto::NodeDef* node = graph_.add_node();
    node->set_name("output");
    node->set_op("Output");
    if (output.grad_fn()) node->add_input(NameOf(output.grad_fn().get()));
    SetShape(node, output.sizes(), output.scalar_type());
  }

  // Modules that hold no node get one, so that every module is drawn.
  proto::GraphDef Finish() {
    std::set<std::string> drawn;  // every scope some node's name lies in
    for (const proto::NodeDef& n : graph_.node()) {
      for (size_t slash = n.name().find('/'); slash != std::string::npos;
           slash = n.name().find('/', slash + 1)) {
        drawn.insert(n.name().substr(0, slash));
      }
    }
    for (const auto& [scope, class_name] : modules_) {
      if (drawn.count(scope) == 0 && scope != root_scope_) {
        proto::NodeDef* node = graph_.add_node();
        node->set_name(scope);
        node->set_op(class_name);
      }
    }
    return std::move(graph_);
  }

 private:
  void AddModule(const torch::nn::Module& m, const std::string& scope) {
    modules_.push_back({scope, ClassName(m)});
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {
      proto::NodeDef* node = graph_.add_node();
      node->set_name(absl::StrCat(scope, "/", p.key()));
      node->set_op("Parameter");
      SetShape(node, p.value().sizes(), p.value().scalar_type());
      params_[p.value().unsafeGetTensorImpl()] = {node->name(), scope};
    }
    for (const auto& c : m.named_children()) AddModule(*c.value(), ChildScope(scope, c.key(), *c.value()));
  }

  std::string NameOf(Node* node) const {
    if (auto a = alias_.find(node); a != alias_.end()) return a->second;
    auto it = names_.find(node);
    return it == names_.end() ? "" : it->second;
  }

  std::string Unique(const std::string& name) {
    int& n = used_[name];
    return n++ == 0 ? name : absl::StrCat(name, "_", n - 1);
  }

  void AddOp(Node* node, const std::string& stage_scope) {
    if (auto* acc = dynamic_cast<torch::autograd::AccumulateGrad*>(node)) {
      auto it = params_.find(acc->variable.unsafeGetTensorImpl());
      if (it != params_.end()) {
        names_[node] = it->second.first;
        param_scope_[node] = it->second.second;
        return;
      }
      // A leaf that is not a parameter of this model (an input that requires grad).
      proto::NodeDef* leaf = graph_.add_node();
      leaf->set_name(Unique("leaf"));
      leaf->set_op("Leaf");
      SetShape(leaf, acc->variable.sizes(), acc->variable.scalar_type());
      names_[node] = leaf->name();
      return;
    }
    // Scope: the module of a parameter read directly (or through ops on
    // parameters only, like the transpose of a Linear's weight).
    std::string scope;
    bool all_params = !node->next_edges().empty();
    bool reads_input = false;
    for (const torch::autograd::Edge& e : node->next_edges()) {
      Node* from = e.function.get();
      auto ps = from ? param_scope_.find(from) : param_scope_.end();
      if (ps != param_scope_.end()) {
        if (scope.empty()) scope = ps->second;
      } else {
        all_params = false;
        if (!from) reads_input = true;
      }
    }
    if (scope.empty()) scope = stage_scope;
    proto::NodeDef* def = graph_.add_node();
    def->set_name(Unique(absl::StrCat(scope, "/", OpName(*node))));
    def->set_op(OpName(*node));
    // An operation that reads a tensor without a gradient and no other
    // operation's output reads the model's input (in the edge's place).
    bool fed_by_op = false;
    for (const torch::autograd::Edge& e : node->next_edges()) {
      fed_by_op = fed_by_op || (e.function && !param_scope_.count(e.function.get()));
    }
    bool reads_model_input = reads_input && !fed_by_op && has_input_;
    for (const torch::autograd::Edge& e : node->next_edges()) {
      if (Node* from = e.function.get()) {
        const std::string name = NameOf(from);
        if (!name.empty()) def->add_input(name);
      } else if (reads_model_input) {
        def->add_input(input_alias_);
        reads_model_input = false;  // once, even beside a frozen parameter's empty edge
      }
    }
    if (node->num_inputs() > 0) {
      const at::Tensor shaped = node->input_metadata(0).zeros_like();
      SetShape(def, shaped.sizes(), shaped.scalar_type());
    }
    names_[node] = def->name();
    if (all_params) param_scope_[node] = scope;
  }

  proto::GraphDef graph_;
  std::string root_scope_;
  bool has_input_ = false;
  std::string input_alias_ = "input";
  std::vector<std::pair<std::string, std::string>> modules_;  // scope, class
  std::unordered_map<const c10::TensorImpl*, std::pair<std::string, std::string>> params_;
  std::unordered_map<Node*, std::string> names_;
  std::unordered_map<Node*, std::string> param_scope_;  // parameter nodes and ops on them only
  std::unordered_map<Node*, std::string> alias_;
  std::map<std::string, int> used_;
  std::vector<std::shared_ptr<Node>> recorded_;
};

// Runs a Sequential child by child, each child's new operations in its scope.
at::Tensor RecordSequential(torch::nn::SequentialImpl& seq, at::Tensor x, const std::string& scope,
                            GraphBuilder* graph) {
  const auto children = seq.named_children();
  size_t i = 0;
  for (torch::nn::AnyModule& child : seq) {
    const std::string key = i < children.size() ? children[i].key() : std::to_string(i);
    ++i;
    const std::string child_scope = GraphBuilder::ChildScope(scope, key, *child.ptr());
    if (auto* inner = dynamic_cast<torch::nn::SequentialImpl*>(child.ptr().get())) {
      x = RecordSequential(*inner, x, child_scope, graph);
      continue;
    }
    // An in-place module (ReLU(inplace)) returns x itself with a new grad_fn:
    // only an unchanged grad_fn means the module ran no operation.
    const std::shared_ptr<torch::autograd::Node> before = x.grad_fn();
    at::Tensor y = child.forward(x);
    if (y.grad_fn() == before) {
      graph->AddPassThrough(child_scope, ClassName(*child.ptr()), y);
    } else {
      graph->Collect(y, child_scope);
    }
    x = y;
  }
  return x;
}

// Puts every module in eval mode and back, each to its own earlier mode.
class EvalModeScope {
 public:
  explicit EvalModeScope(torch::nn::Module& model) {
    Save(model);
    model.eval();
  }
  ~EvalModeScope() {
    // Parents first: train(bool) also sets the children, which follow.
    for (auto& [module, training] : saved_) module->train(training);
  }

 private:
  void Save(torch::nn::Module& m) {
    saved_.push_back({&m, m.is_training()});
    for (const auto& c : m.named_children()) Save(*c.value());
  }
  std::vector<std::pair<torch::nn::Module*, bool>> saved_;
};

}  // namespace

absl::StatusOr<proto::GraphDef> ModelGraph(const torch::nn::Module& model,
                                           const at::Tensor& output) {
  if (!output.defined() || !output.grad_fn()) {
    return absl::FailedPreconditionError(
        "add_graph: the output has no autograd graph to follow; run the forward pass with "
        "gradients enabled (not under torch::NoGradGuard, and not .detach()ed)");
  }
  GraphBuilder graph(model);
  graph.Collect(output, graph.root_scope());
  graph.AddOutput(output);
  return graph.Finish();
}

absl::StatusOr<proto::GraphDef> RecordModelGraph(torch::nn::Module& model,
                                                 const at::Tensor& sample_input) {
  auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&model);
  if (seq == nullptr) return ModelHierarchyGraph(model);
  if (!sample_input.defined()) {
    return absl::InvalidArgumentError("add_graph: the sample input is an undefined tensor");
  }
  GraphBuilder graph(model);
  graph.AddInput(sample_input);
  at::Tensor out;
  try {
    c10::AutoGradMode grad(true);
    EvalModeScope eval(model);
    out = RecordSequential(*seq, sample_input, graph.root_scope(), &graph);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "add_graph: the model's forward pass on the sample input (shape [",
        absl::StrJoin(sample_input.sizes(), ", "), "]) threw: ", e.what()));
  }
  graph.AddOutput(out);
  return graph.Finish();
}

proto::GraphDef ModelHierarchyGraph(const torch::nn::Module& model) {
  return GraphBuilder(model).Finish();
}

absl::StatusOr<std::shared_ptr<torch::nn::Module>> CopyModelForGraph(
    const torch::nn::Module& model) {
  if (dynamic_cast<const torch::nn::SequentialImpl*>(&model) == nullptr) {
    return absl::UnimplementedError(
        "add_graph: only a Sequential is run to record its graph; this model gives its module tree");
  }
  // clone() draws from the default generator (reset() initialises the copy's
  // parameters), which takes its own lock: save and restore around it.
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    state = generator.get_state();
  }
  std::shared_ptr<torch::nn::Module> copy;
  std::string error;
  try {
    copy = model.clone();
  } catch (const std::exception& e) {
    error = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }
  if (copy == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("add_graph: the model cannot be copied to record its graph off the training "
                     "thread: ",
                     error));
  }
  return copy;
}

}  // namespace trainbus::tensorboard
