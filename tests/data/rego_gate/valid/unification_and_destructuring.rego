package gate

pair := [a, b] if {
	[a, b] := split(input.pair, "=")
}

user_name := name if {
	{"user": {"name": name}} := input
}

matches if {
	[_, "x", z] = input.triple
	z > 1
}
