// Anchor for the shared precompiled header (see trainbus_use_torch_pch).
int main() { return 0; }
