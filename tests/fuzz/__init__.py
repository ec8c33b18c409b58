"""A differential fuzzer of the gateway's HTTP/1.1 legs (issue 12): request and response
byte streams through a real gateway to a recording upstream, judged by four properties."""
