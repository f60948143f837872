"""QAM modulation: Sionna's ``Mapper`` and ``Demapper`` with unit average energy."""

from __future__ import annotations

from sionna.phy.mapping import Demapper, Mapper

from linksim.registry import MODULATIONS

__all__ = ["QAM"]


@MODULATIONS.register("qam")
class QAM:
    """Square QAM with Gray labelling and unit average symbol energy (Sionna ``Mapper``).

    Parameters
    ----------
    num_bits_per_symbol : {2, 4, 6, 8}
        2: QPSK, 4: 16-QAM (default), 6: 64-QAM, 8: 256-QAM.
    demapping_method : {"app", "maxlog"}
        Soft demapping rule of Sionna's ``Demapper`` (default exact ``app``).

    Raises
    ------
    ValueError
        For other values.
    """

    ALLOWED_BITS = (2, 4, 6, 8)
    METHODS = ("app", "maxlog")

    def __init__(self, num_bits_per_symbol: int = 4, demapping_method: str = "app"):
        if num_bits_per_symbol not in self.ALLOWED_BITS:
            raise ValueError(f"qam: num_bits_per_symbol must be one of {', '.join(map(str, self.ALLOWED_BITS))} "
                             f"(got {num_bits_per_symbol!r})")
        if demapping_method not in self.METHODS:
            raise ValueError(f"qam: demapping_method must be one of {', '.join(self.METHODS)} (got {demapping_method!r})")
        self.num_bits_per_symbol = int(num_bits_per_symbol)
        self.demapping_method = demapping_method
        self.mapper = Mapper("qam", self.num_bits_per_symbol)
        self.demapper = Demapper(demapping_method, "qam", self.num_bits_per_symbol)

    def get_config(self) -> dict:
        return {"type": "qam", "num_bits_per_symbol": self.num_bits_per_symbol,
                "demapping_method": self.demapping_method}
