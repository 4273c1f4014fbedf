"""Review flags (grading/regrade/flags.py) against model files written to reach what they have no need for
without importing it: the interpreter's modules through another module's attributes (torch.sys, torch.os,
numpy's os), getattr with a name built at run time, and the tests' own package by any road. Correct code,
the reference's and every correct alternative of the mutant corpus, raises no flag. (Instructor-only;
seconds: the sources are parsed, never run.)"""

import pytest

from grading.publish.mutants import ALTERNATIVES
from grading.regrade.flags import review_flags
from semester import with_alternatives
from synthetic_submissions import reference

T, M = "models/transformer.py", "models/mamba.py"
# The first line of causal_mask's body in the reference, where each attack goes.
BODY = "    return torch.tril("

# attack -> the flag it must raise (a part of it)
ATTACKS = {
    "torch.sys.modules['models'].x = 1": "reaches sys through torch.sys",
    "torch.os.system('id')": "reaches os through torch.os",
    "torch.inspect.stack()": "reaches inspect through torch.inspect",
    "einops.sys.modules.clear()": "reaches sys through einops.sys",
    "torch.nn.modules.module.builtins.print(1)": "reaches builtins through torch.nn.modules.module.builtins",
    "torch.serialization.pickle.loads(b'')": "reaches pickle through torch.serialization.pickle",
    "F.gc.get_objects()": "reaches gc through F.gc",
    "getattr(torch, 'o' + 's').getcwd()": "calls getattr() with a name built at run time: 'o' + 's'",
    "getattr(torch, ''.join(['s', 'y', 's']))": "calls getattr() with a name built at run time",
    "getattr(torch, chr(111) + chr(115))": "calls getattr() with a name built at run time",
    "getattr(torch, f'{chr(111)}s')": "calls getattr() with a name built at run time",
    "getattr(torch, 'ctypes')": "reaches ctypes through getattr()",
    "hasattr(torch, 'subprocess')": "reaches subprocess through hasattr()",
    "getattr(torch, '__builtins__')": "reaches __builtins__ through getattr()",
    "__builtins__['__import__']('autograde.oracles')": "reaches __builtins__",
    "torch.sys.modules['autograde.oracles'].answer": "names the autograde package",
    "from ..autograde import oracles": "imports ..autograde from outside models/",
    "from autograde.oracles import answer": "imports autograde.oracles",
    "import autograde.harness as h": "imports autograde.harness",
    "import numpy as np\n    np.os.getpid()": "reaches os through np.os",
}


def with_attack(attack: str) -> dict[str, bytes]:
    source = reference("transformer.py")
    assert source.count(BODY) == 1
    return {T: source.replace(BODY, f"    {attack}\n{BODY}").encode(), M: reference("mamba.py").encode()}


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_attack_on_the_interpreter_or_the_tests_is_flagged_with_its_line(attack):
    flags = review_flags(with_attack(attack))
    first = reference("transformer.py").split(BODY)[0].count("\n") + 1
    lines = {f"{T}:{line} " for line in range(first, first + attack.count("\n") + 1)}
    assert any(flag.startswith(tuple(lines)) and ATTACKS[attack] in flag for flag in flags), flags


def test_a_long_expression_is_cut_in_its_flag():
    (flag,) = review_flags(with_attack("getattr(torch, 'o' * 1 + 's' + ' ' * 0" + " + ''" * 20 + ")"))
    assert flag.endswith("…") and len(flag) < 140


def test_the_reference_and_every_correct_alternative_raise_no_flag():
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    assert review_flags({T: transformer.encode(), M: mamba.encode()}) == []
    for variant in ALTERNATIVES:
        files = {T: with_alternatives(transformer, T, [variant.name]), M: with_alternatives(mamba, M, [variant.name])}
        assert files != {T: transformer, M: mamba}, f"{variant.name} was not placed"
        assert review_flags({path: text.encode() for path, text in files.items()}) == [], variant.name
