package gate

default allow := false if input.x
