package gate

joined := concat(",")
