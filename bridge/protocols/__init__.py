"""Sans-I/O protocol state shared by the bridge's transports and its emulators."""
