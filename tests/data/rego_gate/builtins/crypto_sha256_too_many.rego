package gate

h := crypto.sha256("a", "b", "c")
