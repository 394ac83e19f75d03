// trainbus/run_folder.h — a new run gets a folder of its own.
//
// Two runs must never write into one folder: their curves would interleave
// in TensorBoard and one would overwrite the other's checkpoints. Looking for
// existing files first is a race (two runs started in the same second both
// see an empty folder) and misses runs that wrote no event files. So a run
// claims its folder by creating it, exclusively (mkdir(2) fails with EEXIST
// if the folder is there):
//
//   absl::StatusOr<std::string> name = ClaimRunFolder("runs", "shapes-cnn");
//   // "shapes-cnn", or "shapes-cnn-2", "-3", ... if those exist already;
//   // runs/<name> now exists and belongs to this run.
//
// A resumed run does not claim: it continues in its own folder.
#ifndef TRAINBUS_RUN_FOLDER_H_
#define TRAINBUS_RUN_FOLDER_H_

#include <string>

#include "absl/status/statusor.h"

namespace trainbus {

// Creates `log_root` if needed, then the first of <name>, <name>-2, <name>-3,
// ... that does not exist yet, and returns that name. Errors name the folder
// and the OS error.
absl::StatusOr<std::string> ClaimRunFolder(const std::string& log_root, const std::string& name);

// This process's rank in a distributed run: RANK when WORLD_SIZE > 1 (as
// torchrun and `trainbus train --nproc` set them), else 0.
int RankFromEnvironment();

}  // namespace trainbus

#endif  // TRAINBUS_RUN_FOLDER_H_
