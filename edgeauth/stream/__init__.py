"""TCP/TLS stream routes ([[streams]]): the pure pieces and the runtime that relays bytes."""
