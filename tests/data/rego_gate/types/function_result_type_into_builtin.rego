package gate

double(x) := x * 2

shout := lower(double(2))
