{#- Fails every row that carries information from after the moment of prediction.
    TIMESTAMP known-at columns must be <= prediction_time; with strict=true they must be
    earlier (use it when prediction_time is the target's own timestamp, e.g. a forecast hour).
    DATE known-at columns stand for whole days of outcomes, complete only once the day is over,
    so they must be strictly before prediction_date (default: the prediction time's date; pass
    the local-date column when the timestamp is UTC). NULL means nothing was used: it passes. -#}
{% test point_in_time(model, prediction_time, known_at, prediction_date=none, strict=false) %}
{%- set prediction_date = prediction_date or 'cast(' ~ prediction_time ~ ' as date)' %}
select *
from {{ model }}
where false
{%- for column in known_at %}
    or case
        when typeof({{ column }}) = 'DATE' then {{ column }} >= {{ prediction_date }}
        else {{ column }} {{ '>=' if strict else '>' }} {{ prediction_time }}
    end
{%- endfor %}
{% endtest %}
