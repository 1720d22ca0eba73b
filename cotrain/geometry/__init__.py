"""Geometry of boxes, the single home of quads, areas, vertex order, min-area rectangles,
enclosing boxes and IoU (exact, rotated), for one box or vectorised over many.

``quads``: one box at a time (pure Python, box dicts and flat quads). ``iou``: numpy arrays of
quads, exact convex intersection, and ``box_iou`` for two box dicts (grounding), which is the
same computation the detection metrics use.
"""

from cotrain.geometry.iou import (
                                    box_iou,
                                    iou_matrix,
                                    iou_pairs,
                                    min_area_rect,
                                    order_quads,
                                    rbox_iou,
                                    rboxes_to_quads,
)
from cotrain.geometry.quads import (
                                    box_to_quad,
                                    enclosing_hbb,
                                    hbb_to_quad,
                                    is_convex_quad,
                                    obb_to_quad,
                                    order_quad,
                                    point_in_box,
                                    polygon_area,
                                    quad_area,
                                    quad_to_hbb,
                                    quad_to_obb,
)

__all__ = ["box_iou", "box_to_quad", "enclosing_hbb", "hbb_to_quad", "iou_matrix", "iou_pairs", "is_convex_quad",
           "min_area_rect", "obb_to_quad", "order_quad", "order_quads", "point_in_box", "polygon_area", "quad_area", "quad_to_hbb",
           "quad_to_obb", "rbox_iou", "rboxes_to_quads"]
