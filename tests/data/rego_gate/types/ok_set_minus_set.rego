package gate

d := {1, 2} - {2}
