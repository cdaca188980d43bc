package gate

allow if all([true, input.ok])
