"""Lienthong: the provincial data-sharing hub (trục kết nối, chia sẻ dữ liệu)."""

__version__ = "0.1.0"
