// trainbus/hooks.h — the plugin hooks, listed once.
//
// Every hook a plugin can override is one line of TRAINBUS_HOOKS below: its
// name, the event it receives and when it runs. The Plugin virtuals, the hook
// bits of a plugin's mask, HooksOf<T>(), the Bus's delivery methods, the names
// in messages, `trainbus plugins --json` ("hooks") and the hook list in
// docs/PLUGINS.md are all generated from this list, so a new hook is one
// line here plus the place in the loop that publishes it.
//
// The order is the order within one run:
//
//   Setup                       once, before the plan is fixed
//   TrainBegin
//     EpochBegin
//       IterationBegin
//       AfterBackward           after each backward pass; gradients readable
//       BeforeOptimizerStep     may change gradients or skip the step
//       IterationEnd            the optimizer step ran (or was skipped)
//       ...
//       ValidationBegin
//       ValidationEnd
//     EpochEnd
//   Abort                       only when the run fails
//   TrainEnd                    always, even after Abort
//
// Record is delivered whenever anyone publishes a record, between any of them.
#ifndef TRAINBUS_HOOKS_H_
#define TRAINBUS_HOOKS_H_

#include <cstdint>
#include <string>

// X(Name, EventType, "when it runs"): the plugin method is On<Name>.
// TRAINBUS_LIFECYCLE_HOOKS are published by the host's loop, one method each
// on the Bus; TRAINBUS_HOOKS adds Record, delivered by Bus::Publish().
#define TRAINBUS_HOOKS(X) \
  TRAINBUS_LIFECYCLE_HOOKS(X) \
  X(Record, Record, "for every record anyone publishes (scalars, text, images, ...)")

#define TRAINBUS_LIFECYCLE_HOOKS(X)                                                             \
  X(Setup, SetupEvent, "once, after plugins are created and before the plan is fixed")         \
  X(TrainBegin, TrainBeginEvent, "once, before the first iteration")                            \
  X(EpochBegin, EpochBeginEvent, "at the start of every epoch")                                 \
  X(IterationBegin, IterationBeginEvent, "before the forward pass of every iteration")          \
  X(AfterBackward, AfterBackwardEvent, "after every backward pass; gradients are readable")     \
  X(BeforeOptimizerStep, BeforeOptimizerStepEvent,                                              \
    "before the optimizer step; may change gradients or skip the step")                         \
  X(IterationEnd, IterationEndEvent, "after the optimizer step of every iteration")             \
  X(ValidationBegin, ValidationBeginEvent, "before every validation pass")                      \
  X(ValidationEnd, ValidationEndEvent, "after every validation pass, with its metrics")         \
  X(EpochEnd, EpochEndEvent, "at the end of every epoch (also one cut short by a stop)")        \
  X(Abort, AbortEvent, "once, when the run fails (before TrainEnd)")                            \
  X(TrainEnd, TrainEndEvent, "once, at the end of every run, however it ended")

namespace trainbus {

// The position of each hook in TRAINBUS_HOOKS: kHookIndexTrainBegin, ...
enum HookIndex : int {
#define TRAINBUS_HOOK_INDEX_(name, event, when) kHookIndex##name,
  TRAINBUS_HOOKS(TRAINBUS_HOOK_INDEX_)
#undef TRAINBUS_HOOK_INDEX_
  kNumHooks
};

// One bit per hook; a plugin's mask says which hooks it implements.
enum Hook : uint32_t {
#define TRAINBUS_HOOK_BIT_(name, event, when) kHook##name = 1u << kHookIndex##name,
  TRAINBUS_HOOKS(TRAINBUS_HOOK_BIT_)
#undef TRAINBUS_HOOK_BIT_
  kAllHooks = (1u << kNumHooks) - 1,
};
static_assert(kNumHooks <= 32, "the hook mask is 32 bits");

// "OnTrainBegin", ... for hook index i ("?" out of range).
const char* HookName(int hook_index);
// When hook i runs, as listed above.
const char* HookDescription(int hook_index);
// Comma-separated hook names of a mask, e.g. "OnIterationEnd, OnTrainEnd".
std::string HookMaskToString(uint32_t mask);

}  // namespace trainbus

#endif  // TRAINBUS_HOOKS_H_
