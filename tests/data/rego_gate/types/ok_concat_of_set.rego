package gate

joined := concat(",", {"a", "b"})
