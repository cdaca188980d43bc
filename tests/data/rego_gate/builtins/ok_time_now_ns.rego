package gate

now := time.now_ns()
