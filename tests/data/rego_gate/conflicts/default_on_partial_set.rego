package gate

default deny contains "x"
