package gate

n := "ab" * 2
