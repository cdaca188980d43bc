package gate

rest := {1, 2} - {2}
