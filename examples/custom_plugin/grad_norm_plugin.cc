// The plugin library: the class is in grad_norm.h.
#include "grad_norm.h"

TRAINBUS_PLUGIN(grad_norm::GradNormPlugin)
