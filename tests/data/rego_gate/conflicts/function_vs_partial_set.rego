package gate

names(x) := {x}

names contains "y" if input.y
