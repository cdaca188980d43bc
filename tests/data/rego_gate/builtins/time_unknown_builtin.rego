package gate

now := time.now()
