// trainbus/summary_types.h — the plain value types shared by records and the
// TensorBoard writer: hyperparameters and the Custom Scalars layout.
//
// No LibTorch here: the standalone writer (trainbus::tensorboard_core, the
// pkg-config module trainbus-tensorboard) takes these types too.
#ifndef TRAINBUS_SUMMARY_TYPES_H_
#define TRAINBUS_SUMMARY_TYPES_H_

#include <map>
#include <string>
#include <variant>
#include <vector>

namespace trainbus {

// A hyperparameter value as TensorBoard's hparams dashboard shows it.
using HParamValue = std::variant<double, bool, std::string>;
using HParams = std::map<std::string, HParamValue>;

// Layout of TensorBoard's "Custom Scalars" dashboard.
struct CustomScalarChart {
  std::string title;
  // Multiline chart: one line per tag matching any of these regular expressions.
  std::vector<std::string> multiline_tags;
  // Margin chart: each series is a value tag with lower and upper bound tags.
  struct MarginSeries {
    std::string value, lower, upper;
  };
  std::vector<MarginSeries> margin_series;  // non-empty means a margin chart
};
struct CustomScalarCategory {
  std::string title;
  std::vector<CustomScalarChart> charts;
  bool closed = false;
};
using CustomScalarLayout = std::vector<CustomScalarCategory>;

}  // namespace trainbus

#endif  // TRAINBUS_SUMMARY_TYPES_H_
