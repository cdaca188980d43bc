package gate

double(x) := x * 2

allow if {
	double(2, four)
	four == 4
}
