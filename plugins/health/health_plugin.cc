// The health plugin library: the class lives in the static library
// trainbus_health_lib (health.h) so tests can use it in-process.
#include "health.h"

TRAINBUS_PLUGIN(trainbus::health::HealthPlugin)
