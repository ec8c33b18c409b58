"""The admin API (design §6): Kong's request and response shapes on a loopback listener."""
