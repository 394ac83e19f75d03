// Anchor for the shared precompiled headers (see trainbus_use_torch_pch and
// trainbus_use_torch_lib_pch in TrainbusHelpers.cmake).
int main() { return 0; }
