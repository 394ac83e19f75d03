// The source of every shared precompiled header's anchor target (see
// trainbus_define_pch in TrainbusHelpers.cmake).
int main() { return 0; }
