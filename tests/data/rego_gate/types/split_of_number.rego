package gate

parts := split(1, ",")
