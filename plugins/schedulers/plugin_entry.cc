// The shared-library entry point of the `schedulers` plugin.
#include "schedulers_plugin.h"

TRAINBUS_PLUGIN(trainbus::schedulers::SchedulersPlugin)
