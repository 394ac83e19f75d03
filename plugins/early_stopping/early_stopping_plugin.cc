// The early_stopping plugin library: the class lives in the static library
// trainbus_early_stopping_lib (early_stopping.h) so tests can use it in-process.
#include "early_stopping.h"

TRAINBUS_PLUGIN(trainbus::early_stopping::EarlyStoppingPlugin)
