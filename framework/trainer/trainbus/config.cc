#include "trainbus/config.h"

#include <cmath>
#include <set>
#include <thread>
#include <utility>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace trainbus {
namespace {

namespace pb = google::protobuf;

class TextErrors : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors.push_back(absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message));
  }
  std::vector<std::string> errors;
};

std::string FormatFromPath(const std::string& path, absl::string_view text) {
  for (const char* ext : {".txtpb", ".textproto", ".pbtxt", ".cfg", ".txt"}) {
    if (absl::EndsWith(path, ext)) return "text";
  }
  if (absl::EndsWith(path, ".json")) return "json";
  absl::string_view t = absl::StripLeadingAsciiWhitespace(text);
  return !t.empty() && t.front() == '{' ? "json" : "text";
}

absl::Status SetScalar(pb::Message* msg, const pb::FieldDescriptor* f, absl::string_view value,
                       absl::string_view path) {
  const pb::Reflection* r = msg->GetReflection();
  auto bad = [&](absl::string_view expects) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " expects ", expects, ", got \"", value, "\""));
  };
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("an integer");
      r->SetInt32(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      // 1e18 is an integer too (as in a JSON config): exactly, below 2^63.
      double d;
      if (!absl::SimpleAtoi(value, &v)) {
        if (!absl::SimpleAtod(value, &d) || std::floor(d) != d || !(std::fabs(d) < 9.2e18)) {
          return bad("an integer");
        }
        v = static_cast<int64_t>(d);
      }
      r->SetInt64(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a non-negative integer");
      r->SetUInt32(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a non-negative integer");
      r->SetUInt64(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return bad("a number");
      r->SetDouble(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return bad("a number");
      r->SetFloat(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return bad("true or false");
      r->SetBool(msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(msg, f, std::string(value));
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(path, " cannot be set with --set"));
  }
  return absl::OkStatus();
}

absl::Status AddRepeatedScalars(pb::Message* msg, const pb::FieldDescriptor* f,
                                absl::string_view value, absl::string_view path) {
  absl::string_view list = absl::StripAsciiWhitespace(value);
  const bool opened = absl::ConsumePrefix(&list, "[");
  const bool closed = absl::ConsumeSuffix(&list, "]");
  const bool empty = absl::StripAsciiWhitespace(list).empty();
  std::vector<absl::string_view> items;
  if (!empty) items = absl::StrSplit(list, ',');
  bool malformed = opened != closed;
  for (absl::string_view& item : items) {
    item = absl::StripAsciiWhitespace(item);
    malformed |= item.empty();  // "[1,]", "[1,,2]", "[1," (unclosed)
  }
  if (malformed) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " expects a list written like [64, 32], got \"", value, "\""));
  }
  msg->GetReflection()->ClearField(msg, f);
  for (absl::string_view item : items) {
    const pb::Reflection* r = msg->GetReflection();
    std::string text(item);
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      absl::ConsumePrefix(&item, "\"");
      absl::ConsumeSuffix(&item, "\"");
      r->AddString(msg, f, std::string(item));
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64) {
      int64_t v;
      if (!absl::SimpleAtoi(item, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " expects a list of integers, got \"", value, "\""));
      }
      r->AddInt64(msg, f, v);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, " cannot be set with --set"));
    }
  }
  return absl::OkStatus();
}

// protobuf's JSON parser (3.21) takes some values of the wrong JSON type
// without a word -- "yes" for a bool (as true), a bare value for a list
// (hidden: 1 as [1]), an object for a list of plugins -- and words other
// mistakes in its own terms ("Starting an object on a scalar field for type
// epochs"). So the JSON is first checked against the descriptor for the kind
// of each value, and a wrong kind is an error naming the field's full path.
// Proto3 JSON's own spellings stay accepted: numbers in strings ("5",
// "Infinity"; protobuf checks their content), null for "unset", json_name
// (lowerCamelCase) keys. Unknown keys are left to protobuf's parser.
std::string DescribeJson(const pb::Value& v) {
  switch (v.kind_case()) {
    case pb::Value::kNullValue:
      return "null";
    case pb::Value::kNumberValue:
      return absl::StrCat("the number ", v.number_value());
    case pb::Value::kStringValue:
      return absl::StrCat("the string \"", v.string_value(), "\"");
    case pb::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case pb::Value::kStructValue:
      return "an object";
    case pb::Value::kListValue:
      return "a list";
    default:
      return "nothing";
  }
}

// What one element of field `f` must be, and whether `v` is that.
bool ElementKindOk(const pb::FieldDescriptor* f, const pb::Value& v, std::string* expected) {
  using K = pb::Value::KindCase;
  const K kind = v.kind_case();
  if (kind == K::kNullValue) return true;
  if (const pb::Descriptor* m = f->message_type()) {
    if (m->full_name() == "google.protobuf.Value") return true;
    *expected = m->full_name() == "google.protobuf.Struct" ? "an object of options" : "an object";
    return kind == K::kStructValue;
  }
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      *expected = "true or false (without quotes)";
      return kind == K::kBoolValue;
    case pb::FieldDescriptor::CPPTYPE_STRING:
      *expected = "a string";
      return kind == K::kStringValue;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      *expected = "a number";
      return kind == K::kNumberValue || kind == K::kStringValue;
    default:
      *expected = "an integer";
      return kind == K::kNumberValue || kind == K::kStringValue;
  }
}

// "an integer" -> "integers"
std::string Plural(absl::string_view expected) {
  if (absl::StartsWith(expected, "true or false")) return "true or false values";
  absl::ConsumePrefix(&expected, "an ");
  absl::ConsumePrefix(&expected, "a ");
  return absl::StrCat(expected, "s");
}

const pb::FieldDescriptor* FindJsonField(const pb::Descriptor* d, const std::string& key) {
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->name() == key || d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

absl::Status CheckJsonKinds(const pb::Descriptor* d, const pb::Struct& object,
                            const std::string& path, absl::string_view origin) {
  for (const auto& [key, value] : object.fields()) {
    const pb::FieldDescriptor* f = FindJsonField(d, key);
    if (f == nullptr) continue;  // protobuf names unknown fields
    const std::string where = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    std::string expected;
    if (f->is_repeated() && value.kind_case() != pb::Value::kNullValue) {
      if (value.kind_case() != pb::Value::kListValue) {
        ElementKindOk(f, pb::Value(), &expected);
        return absl::InvalidArgumentError(absl::StrCat(origin, ": ", where, " must be a list of ",
                                                       Plural(expected), " ([...]), got ",
                                                       DescribeJson(value)));
      }
      for (int i = 0; i < value.list_value().values_size(); ++i) {
        const pb::Value& element = value.list_value().values(i);
        const std::string at = absl::StrCat(where, "[", i, "]");
        if (!ElementKindOk(f, element, &expected)) {
          return absl::InvalidArgumentError(absl::StrCat(origin, ": ", at, " must be ", expected,
                                                         ", got ", DescribeJson(element)));
        }
        if (f->message_type() != nullptr && element.kind_case() == pb::Value::kStructValue) {
          if (absl::Status s = CheckJsonKinds(f->message_type(), element.struct_value(), at, origin);
              !s.ok()) {
            return s;
          }
        }
      }
      continue;
    }
    if (!ElementKindOk(f, value, &expected)) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": ", where, " must be ", expected, ", got ", DescribeJson(value)));
    }
    const pb::Descriptor* m = f->message_type();
    if (m != nullptr && !absl::StartsWith(m->file()->name(), "google/protobuf/") &&
        value.kind_case() == pb::Value::kStructValue) {
      if (absl::Status s = CheckJsonKinds(m, value.struct_value(), where, origin); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// A key given twice in one JSON object: protobuf keeps the last one without a
// word (or, for an optional field, says "oneof field '_epochs' is already
// set"). Names the key's path and the line of its second use. Text that is
// not JSON is left to the parser.
absl::Status CheckDuplicateKeys(absl::string_view text, absl::string_view origin) {
  struct Frame {
    bool object = false;
    std::set<std::string> keys;
    std::string key;    // the object's current key
    int64_t index = 0;  // the array's current element
  };
  std::vector<Frame> stack;
  bool expect_key = false;
  int line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (c == '"') {
      size_t end = i + 1;
      while (end < text.size() && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
      if (end >= text.size()) return absl::OkStatus();  // unterminated: the parser says where
      const std::string word(text.substr(i + 1, end - i - 1));
      if (!stack.empty() && stack.back().object && expect_key) {
        if (!stack.back().keys.insert(word).second) {
          std::string path;
          for (const Frame& f : stack) {
            if (&f == &stack.back()) break;
            path += f.object ? absl::StrCat(path.empty() ? "" : ".", f.key)
                             : absl::StrCat("[", f.index, "]");
          }
          absl::StrAppend(&path, path.empty() ? "" : ".", word);
          return absl::InvalidArgumentError(absl::StrCat(
              origin, ": ", path, " is given twice (the second time on line ", line,
              "); keep one"));
        }
        stack.back().key = word;
        expect_key = false;
      }
      i = end;
    } else if (c == '{' || c == '[') {
      stack.emplace_back();
      stack.back().object = c == '{';
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
    } else if (c == ',' && !stack.empty()) {
      if (stack.back().object) {
        expect_key = true;
      } else {
        ++stack.back().index;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RangeError(absl::string_view origin, absl::string_view field, absl::string_view rule,
                        absl::string_view got) {
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": ", field, " must be ", rule, ", got ", got));
}

}  // namespace

absl::StatusOr<config::RunConfig> ParseRunConfig(absl::string_view text, absl::string_view format,
                                                 absl::string_view origin) {
  config::RunConfig config;
  // protobuf's text parser accepts invalid UTF-8 in strings, which the JSON
  // copy saved next to the run would then silently alter.
  if (!pb::internal::IsStructurallyValidUTF8(text.data(), static_cast<int>(text.size()))) {
    size_t bad = 0;
    while (bad < text.size() &&
           pb::internal::IsStructurallyValidUTF8(text.data(), static_cast<int>(bad + 1))) {
      ++bad;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": not valid UTF-8 (first bad byte near offset ", bad,
        "); save the config as UTF-8 text"));
  }
  if (format == "json") {
    if (absl::Status s = CheckDuplicateKeys(text, origin); !s.ok()) return s;
    // Kinds first (see CheckJsonKinds); text that is not JSON at all is left
    // to protobuf's parser, which says where.
    pb::Value json;
    if (pb::util::JsonStringToMessage(std::string(text), &json).ok() &&
        json.kind_case() == pb::Value::kStructValue) {
      if (absl::Status s = CheckJsonKinds(config::RunConfig::descriptor(), json.struct_value(), "",
                                          origin);
          !s.ok()) {
        return s;
      }
    }
    pb::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto status = pb::util::JsonStringToMessage(std::string(text), &config, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": not a valid run config (JSON): ", std::string(status.message()),
          ". Field names are in framework/trainer/trainbus/proto/run_config.proto."));
    }
  } else if (format == "text") {
    pb::TextFormat::Parser parser;
    TextErrors errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(std::string(text), &config)) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": not a valid run config (protobuf text format): ",
          absl::StrJoin(errors.errors, "; "),
          ". Field names are in framework/trainer/trainbus/proto/run_config.proto."));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": unknown config format '", format, "' (json or text)"));
  }
  return config;
}

absl::StatusOr<config::RunConfig> LoadRunConfig(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", path, " is a folder, not a config file; give the file, e.g. ", path,
        "/config.json"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path, ": ",
                                            std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read config file ", path, ": ",
                                            std::strerror(errno)));
  }
  std::string text = buffer.str();
  // An empty file would train every default with no plugins and write
  // nothing: almost certainly the wrong file.
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, " is empty; write {} to take every default, or start from "
        "examples/shapes/config.json"));
  }
  auto config = ParseRunConfig(text, FormatFromPath(path, text), path);
  if (!config.ok()) return config;
  // Relative plugin folders and libraries are the config file's neighbours,
  // wherever the program runs from (a --set value stays relative to the
  // working folder, as a command-line path is).
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  auto beside_the_config = [&](std::string* p) {
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (dir / *p).lexically_normal().string();
  };
  for (std::string& folder : *config->mutable_plugin_paths()) beside_the_config(&folder);
  for (config::PluginConfig& plugin : *config->mutable_plugins()) {
    beside_the_config(plugin.mutable_library());
  }
  return config;
}

absl::Status ApplyOverride(config::RunConfig* config, absl::string_view assignment) {
  size_t eq = assignment.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--set ", assignment, ": expected key=value, e.g. --set trainer.epochs=3"));
  }
  if (!pb::internal::IsStructurallyValidUTF8(assignment.data(), static_cast<int>(assignment.size()))) {
    return absl::InvalidArgumentError(
        "--set: the assignment is not valid UTF-8; give text in UTF-8");
  }
  absl::string_view path = assignment.substr(0, eq);
  absl::string_view value = assignment.substr(eq + 1);
  std::string where = absl::StrCat("--set ", assignment);
  std::vector<std::string> parts = absl::StrSplit(path, '.');

  pb::Message* msg = config;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* f = d->FindFieldByName(parts[i]);
    if (f == nullptr) {
      std::vector<std::string> names;
      for (int k = 0; k < d->field_count(); ++k) names.push_back(d->field(k)->name());
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown field '", parts[i],
                                                     "'; fields here: ", absl::StrJoin(names, ", ")));
    }
    const pb::Reflection* r = msg->GetReflection();
    bool last = (i + 1 == parts.size());
    if (f->is_repeated() && f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      // plugins.<id>...: select the element whose `id` (or, without one, whose
      // `name`) is the next part.
      if (last) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": name a plugin, e.g. plugins.progress.enabled=false"));
      }
      const std::string& key = parts[++i];
      pb::Message* found = nullptr;
      for (int k = 0; k < r->FieldSize(*msg, f); ++k) {
        pb::Message* element = r->MutableRepeatedMessage(msg, f, k);
        const pb::FieldDescriptor* name_field = element->GetDescriptor()->FindFieldByName("name");
        const pb::FieldDescriptor* id_field = element->GetDescriptor()->FindFieldByName("id");
        if (name_field == nullptr) continue;
        std::string instance = id_field ? element->GetReflection()->GetString(*element, id_field) : "";
        if (instance.empty()) instance = element->GetReflection()->GetString(*element, name_field);
        if (instance == key) found = element;
      }
      if (i + 1 == parts.size()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": name a field of plugin '", key,
                                                       "', e.g. plugins.", key, ".enabled=false"));
      }
      if (found == nullptr) {
        // Not in the config: --set adds it (--set plugins.csv.enabled=true),
        // as instance `key` of plugin `key`. A name that is no plugin fails
        // when plugins are loaded, with the list of those there are.
        if (f->message_type() != config::PluginConfig::descriptor()) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": no element '", key, "'"));
        }
        std::vector<std::string> ids;  // instances of plugin `key` under other ids
        for (int k = 0; k < r->FieldSize(*msg, f); ++k) {
          const auto& element = static_cast<const config::PluginConfig&>(r->GetRepeatedMessage(*msg, f, k));
          if (element.name() == key) ids.push_back(element.id());
        }
        if (!ids.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": the config has plugin '", key, "' under the ids ", absl::StrJoin(ids, ", "),
              "; name one of them, e.g. plugins.", ids[0], ".", parts[i + 1]));
        }
        const std::string rest = absl::StrJoin(parts.begin() + i + 1, parts.end(), ".");
        if (rest == "enabled" && absl::StripAsciiWhitespace(value) == "false") {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": the config has no plugin '", key, "' to disable (check the name: ",
              "`trainbus plugins` lists them)"));
        }
        auto* added = static_cast<config::PluginConfig*>(r->AddMessage(msg, f));
        added->set_name(key);
        added->set_id(key);
        found = added;
      }
      msg = found;
      continue;
    }
    if (f->message_type() != nullptr && f->message_type()->full_name() == "google.protobuf.Struct") {
      if (last) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": name an option, e.g. ", path,
                                                       ".some_option=1"));
      }
      std::string key = absl::StrJoin(parts.begin() + i + 1, parts.end(), ".");
      auto* s = static_cast<pb::Struct*>(r->MutableMessage(msg, f));
      pb::Value v;
      if (!pb::util::JsonStringToMessage(std::string(value), &v).ok()) {
        v.set_string_value(std::string(value));  // not JSON: a plain string
      }
      (*s->mutable_fields())[key] = v;
      return absl::OkStatus();
    }
    if (last && f->message_type() != nullptr &&
        f->message_type()->full_name() == "google.protobuf.Value") {
      auto* v = static_cast<pb::Value*>(r->MutableMessage(msg, f));
      if (!pb::util::JsonStringToMessage(std::string(value), v).ok()) {
        v->set_string_value(std::string(value));  // not JSON: a plain string
      }
      return absl::OkStatus();
    }
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (last) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": '", path, "' is a section; set one of its fields"));
      }
      msg = r->MutableMessage(msg, f);
      continue;
    }
    if (!last) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": '", parts[i], "' is a value, not a section"));
    }
    if (f->is_repeated()) return AddRepeatedScalars(msg, f, value, where);
    return SetScalar(msg, f, value, where);
  }
  return absl::OkStatus();
}

namespace {

// Upper bounds of config fields that size memory, threads or a plan.
constexpr int64_t kMaxThreads = 1024;
constexpr int64_t kMaxIterations = int64_t{1} << 62;

// FinalizeRunConfig, one section at a time: each fills in its defaults and
// checks its fields, naming the field and the file in every message.
absl::Status FinalizeTrainer(config::TrainerConfig* t, absl::string_view origin) {
  if (!t->has_epochs()) t->set_epochs(5);
  if (!t->has_batch_size()) t->mutable_batch_size()->set_number_value(64);
  if (!t->has_seed()) t->set_seed(42);
  if (!t->has_validate_every_n_epochs()) t->set_validate_every_n_epochs(1);
  if (!t->has_validate_every_n_iterations()) t->set_validate_every_n_iterations(0);
  if (t->epochs() <= 0 || t->epochs() > kMaxIterations) {
    return RangeError(origin, "trainer.epochs", "between 1 and 2^62", absl::StrCat(t->epochs()));
  }
  {
    const pb::Value& b = t->batch_size();
    const bool full = b.kind_case() == pb::Value::kStringValue && b.string_value() == "full";
    const bool number = b.kind_case() == pb::Value::kNumberValue && b.number_value() >= 1 &&
                        b.number_value() <= 9.0e15 && std::floor(b.number_value()) == b.number_value();
    if (!full && !number) {
      std::string got;
      (void)pb::util::MessageToJsonString(b, &got);
      return RangeError(origin, "trainer.batch_size", "a whole number > 0 or \"full\"", got);
    }
  }
  if (t->has_validation_subset() && t->validation_subset() < 0) {
    return RangeError(origin, "trainer.validation_subset", ">= 0 (0: all)",
                      absl::StrCat(t->validation_subset()));
  }
  {
    auto* n = t->mutable_normalize();
    if (n->mode().empty()) n->set_mode("none");
    if (n->mode() != "none" && n->mode() != "compute" && n->mode() != "given") {
      return RangeError(origin, "trainer.normalize.mode", "one of \"none\", \"compute\", \"given\"",
                        absl::StrCat("\"", n->mode(), "\""));
    }
    if (n->mode() == "given") {
      if (n->mean_size() == 0 || n->mean_size() != n->std_size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": trainer.normalize.mode \"given\" needs mean and std with one value per "
            "channel each, got ", n->mean_size(), " and ", n->std_size()));
      }
      for (int i = 0; i < n->mean_size(); ++i) {
        if (!std::isfinite(n->mean(i))) {
          return RangeError(origin, absl::StrCat("trainer.normalize.mean[", i, "]"), "finite",
                            absl::StrCat(n->mean(i)));
        }
      }
      for (int i = 0; i < n->std_size(); ++i) {
        if (!(n->std(i) > 0) || !std::isfinite(n->std(i))) {
          return RangeError(origin, absl::StrCat("trainer.normalize.std[", i, "]"), "> 0",
                            absl::StrCat(n->std(i)));
        }
      }
    } else if (n->mean_size() > 0 || n->std_size() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": trainer.normalize.mean/std are only used with mode \"given\""));
    }
  }
  if (t->has_max_iterations() && (t->max_iterations() <= 0 || t->max_iterations() > kMaxIterations)) {
    return RangeError(origin, "trainer.max_iterations", "between 1 and 2^62 (or unset)",
                      absl::StrCat(t->max_iterations()));
  }
  if (t->validate_every_n_epochs() < 0) {
    return RangeError(origin, "trainer.validate_every_n_epochs", ">= 0",
                      absl::StrCat(t->validate_every_n_epochs()));
  }
  if (t->validate_every_n_iterations() < 0) {
    return RangeError(origin, "trainer.validate_every_n_iterations", ">= 0",
                      absl::StrCat(t->validate_every_n_iterations()));
  }
  if (!t->has_accumulate_batches()) t->set_accumulate_batches(1);
  if (t->accumulate_batches() < 1 || t->accumulate_batches() > 65536) {
    return RangeError(origin, "trainer.accumulate_batches", "between 1 and 65536",
                      absl::StrCat(t->accumulate_batches()));
  }
  // Each thread is created up front: a huge count only stalls the start.
  if (t->has_num_threads() && (t->num_threads() <= 0 || t->num_threads() > kMaxThreads)) {
    return RangeError(origin, "trainer.num_threads",
                      absl::StrCat("between 1 and ", kMaxThreads, " (this machine has ",
                                   std::thread::hardware_concurrency(),
                                   " CPUs; leave it unset for LibTorch's choice)"),
                      absl::StrCat(t->num_threads()));
  }
  if (t->has_distributed_timeout_seconds() &&
      (t->distributed_timeout_seconds() < 1 || t->distributed_timeout_seconds() > 86400)) {
    return RangeError(origin, "trainer.distributed_timeout_seconds", "between 1 and 86400",
                      absl::StrCat(t->distributed_timeout_seconds()));
  }
  return absl::OkStatus();
}

absl::Status FinalizeModel(config::ModelConfig* m, absl::string_view origin) {
  if (m->type().empty()) m->set_type("cnn");
  if (m->type() != "cnn" && m->type() != "mlp") {
    return RangeError(origin, "model.type", "one of \"cnn\", \"mlp\"", absl::StrCat("\"", m->type(), "\""));
  }
  if (m->hidden().empty()) {
    if (m->type() == "cnn") {
      m->add_hidden(8);
      m->add_hidden(16);
    } else {
      m->add_hidden(128);
    }
  }
  for (int i = 0; i < m->hidden_size(); ++i) {
    if (m->hidden(i) <= 0 || m->hidden(i) > 65536) {
      return RangeError(origin, absl::StrCat("model.hidden[", i, "]"), "in [1, 65536]",
                        absl::StrCat(m->hidden(i)));
    }
  }
  if (m->type() == "cnn" && m->hidden_size() != 2) {
    return RangeError(origin, "model.hidden", "two conv widths for model.type \"cnn\"",
                      absl::StrCat(m->hidden_size(), " values"));
  }
  if (!m->has_dropout()) m->set_dropout(0.0);
  if (!(m->dropout() >= 0.0 && m->dropout() < 1.0)) {
    return RangeError(origin, "model.dropout", "in [0, 1)", absl::StrCat(m->dropout()));
  }
  return absl::OkStatus();
}

absl::Status FinalizeDataset(config::DatasetConfig* d, absl::string_view origin) {
  if (d->type().empty()) d->set_type("shapes");
  if (d->type() != "shapes" && d->type() != "mnist" && d->type() != "cifar10") {
    return RangeError(origin, "dataset.type", "one of \"shapes\", \"mnist\", \"cifar10\"",
                      absl::StrCat("\"", d->type(), "\""));
  }
  if (d->type() != "shapes" && d->dir().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": dataset.dir is required for dataset.type \"", d->type(),
        "\" (the folder holding its files)"));
  }
  if (!d->has_train_samples()) d->set_train_samples(d->type() == "shapes" ? 4000 : 0);
  if (!d->has_val_samples()) d->set_val_samples(d->type() == "shapes" ? 1000 : 0);
  if (!d->has_seed()) d->set_seed(7);
  if (d->train_samples() < 0 || (d->type() == "shapes" && d->train_samples() == 0)) {
    return RangeError(origin, "dataset.train_samples", d->type() == "shapes" ? "> 0" : ">= 0",
                      absl::StrCat(d->train_samples()));
  }
  if (d->val_samples() < 0) {
    return RangeError(origin, "dataset.val_samples", ">= 0", absl::StrCat(d->val_samples()));
  }
  // Shapes are drawn in memory, 3.1 KB each (28x28 floats): a million is 3 GB.
  constexpr int64_t kMaxShapes = 1'000'000;
  if (d->type() == "shapes") {
    for (auto [field, n] : {std::pair<const char*, int64_t>{"dataset.train_samples", d->train_samples()},
                            {"dataset.val_samples", d->val_samples()}}) {
      if (n > kMaxShapes) {
        return RangeError(origin, field,
                          "at most 1000000 for \"shapes\" (drawn in memory, 3.1 KB each)",
                          absl::StrCat(n));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FinalizeOptimizer(config::OptimizerConfig* o, absl::string_view origin) {
  if (o->type().empty()) o->set_type("sgd");
  if (o->type() != "sgd" && o->type() != "adam" && o->type() != "adamw") {
    return RangeError(origin, "optimizer.type", "one of \"sgd\", \"adam\", \"adamw\"",
                      absl::StrCat("\"", o->type(), "\""));
  }
  if (!o->has_lr()) o->set_lr(o->type() == "sgd" ? 0.05 : 0.001);
  if (!o->has_weight_decay()) o->set_weight_decay(o->type() == "adamw" ? 0.01 : 0.0);
  if (!o->has_beta1()) o->set_beta1(0.9);
  if (!o->has_beta2()) o->set_beta2(0.999);
  if (!o->has_eps()) o->set_eps(1e-8);
  if (!(o->lr() > 0.0) || !std::isfinite(o->lr())) {
    return RangeError(origin, "optimizer.lr", "a finite number > 0", absl::StrCat(o->lr()));
  }
  if (o->momentum() < 0.0) return RangeError(origin, "optimizer.momentum", ">= 0", absl::StrCat(o->momentum()));
  if (o->nesterov() && o->momentum() <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": optimizer.nesterov needs optimizer.momentum > 0"));
  }
  if (o->weight_decay() < 0.0) {
    return RangeError(origin, "optimizer.weight_decay", ">= 0", absl::StrCat(o->weight_decay()));
  }
  if (!(o->beta1() >= 0.0 && o->beta1() < 1.0)) {
    return RangeError(origin, "optimizer.beta1", "in [0, 1)", absl::StrCat(o->beta1()));
  }
  if (!(o->beta2() >= 0.0 && o->beta2() < 1.0)) {
    return RangeError(origin, "optimizer.beta2", "in [0, 1)", absl::StrCat(o->beta2()));
  }
  if (!(o->eps() > 0.0)) return RangeError(origin, "optimizer.eps", "> 0", absl::StrCat(o->eps()));
  return absl::OkStatus();
}

absl::Status FinalizePlugins(config::RunConfig* c, absl::string_view origin) {
  for (int i = 0; i < c->plugins_size(); ++i) {
    const auto& p = c->plugins(i);
    if (p.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": plugins[", i, "].name is empty; every plugin needs a name"));
    }
    const std::string id = p.id().empty() ? p.name() : p.id();
    if (!p.id().empty() && id.find_first_of("/.") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": plugins[", i, "].id \"", id, "\" may not contain '/' or '.' (it prefixes the "
          "plugin's record tags and names it in --set plugins.<id>...)"));
    }
    for (int k = 0; k < i; ++k) {
      const std::string other = c->plugins(k).id().empty() ? c->plugins(k).name() : c->plugins(k).id();
      if (other == id) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": plugin '", id, "' is listed twice (plugins[", k, "] and plugins[", i,
            "]); to run two instances of one plugin, give each its own \"id\""));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FinalizeRunConfig(config::RunConfig* c, absl::string_view origin) {
  if (absl::Status s = FinalizeTrainer(c->mutable_trainer(), origin); !s.ok()) return s;
  if (absl::Status s = FinalizeModel(c->mutable_model(), origin); !s.ok()) return s;
  if (absl::Status s = FinalizeDataset(c->mutable_dataset(), origin); !s.ok()) return s;
  if (absl::Status s = FinalizeOptimizer(c->mutable_optimizer(), origin); !s.ok()) return s;
  if (c->log_root().empty()) c->set_log_root("runs");
  if (c->name().empty()) c->set_name(absl::StrCat(c->model().type(), "-", c->dataset().type()));
  if (c->name().find('/') != std::string::npos || c->name() == "." || c->name() == "..") {
    return RangeError(origin, "name", "a plain folder name (no '/')", absl::StrCat("\"", c->name(), "\""));
  }
  if (c->on_plugin_error().empty()) c->set_on_plugin_error("stop");
  if (c->on_plugin_error() != "stop" && c->on_plugin_error() != "disable_plugin") {
    return RangeError(origin, "on_plugin_error", "\"stop\" or \"disable_plugin\"",
                      absl::StrCat("\"", c->on_plugin_error(), "\""));
  }
  if (!c->has_plugin_close_timeout_seconds()) c->set_plugin_close_timeout_seconds(120);
  if (!(c->plugin_close_timeout_seconds() >= 0) || !std::isfinite(c->plugin_close_timeout_seconds())) {
    return RangeError(origin, "plugin_close_timeout_seconds", "a finite number >= 0 (0: no limit)",
                      absl::StrCat(c->plugin_close_timeout_seconds()));
  }
  return FinalizePlugins(c, origin);
}

int64_t ResolveBatchSize(const config::TrainerConfig& trainer, int64_t samples) {
  const pb::Value& b = trainer.batch_size();
  if (b.kind_case() == pb::Value::kStringValue && b.string_value() == "full") return samples;
  if (b.kind_case() == pb::Value::kNumberValue) return static_cast<int64_t>(b.number_value());
  return 64;
}

std::string RunConfigToJson(const config::RunConfig& config) {
  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)pb::util::MessageToJsonString(config, &out, options);
  return out;
}

}  // namespace trainbus
