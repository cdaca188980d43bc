package gate

n := count("abc")
