package gate

default deny := set()

deny contains "x" if input.x
