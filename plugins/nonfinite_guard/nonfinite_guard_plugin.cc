// The nonfinite_guard plugin library: the class lives in the static library
// trainbus_nonfinite_guard_lib (nonfinite_guard.h) so tests can use it in-process.
#include "nonfinite_guard.h"

TRAINBUS_PLUGIN(trainbus::nonfinite_guard::NonFiniteGuardPlugin)
