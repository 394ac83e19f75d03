// The grad_clip plugin library: the class lives in the static library
// trainbus_grad_clip_lib (grad_clip.h) so tests can use it in-process.
#include "grad_clip.h"

TRAINBUS_PLUGIN(trainbus::grad_clip::GradClipPlugin)
