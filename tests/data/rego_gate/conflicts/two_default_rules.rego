package gate

default allow := false

default allow := true
