package gate

joined := concat(",", 1)
