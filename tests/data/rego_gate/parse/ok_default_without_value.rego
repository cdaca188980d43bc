package gate

default allow
