package gate

s := {1, 2} | [3]
